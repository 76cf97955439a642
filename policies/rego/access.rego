# Access by role and group: who may search at all, and which groups' documents they see.
#
# A document with no groups is visible to everyone who may search. A document with groups
# is visible to members of at least one of them, and to roles listed in
# data.config.access.all_groups_roles (the privacy officer reviews everything).
package sanctum.access

import rego.v1

cfg := data.config.access

has_role(principal, roles) if {
	some role in object.get(principal, "roles", [])
	role in roles
}

# Why `principal` may not search ([] when they may).
search_denials(principal) := [] if has_role(principal, cfg.search_roles)

search_denials(principal) := [sprintf("principal %q has no known role (known roles: %v)", [object.get(principal, "id", "?"), data.config.roles])] if {
	not has_role(principal, data.config.roles)
}

search_denials(principal) := [sprintf("roles %v may not search documents; searching needs one of %v", [object.get(principal, "roles", []), cfg.search_roles])] if {
	has_role(principal, data.config.roles)
	not has_role(principal, cfg.search_roles)
}

all_groups(principal) if has_role(principal, cfg.all_groups_roles)

# Why `principal` may not see `doc` for its groups ([] when they may).
group_denials(principal, doc) := [msg |
	groups := object.get(doc, "groups", [])
	count(groups) > 0
	not all_groups(principal)
	not member_of_any(principal, groups)
	msg := sprintf("the document is restricted to groups %v; you are in %v", [groups, object.get(principal, "groups", [])])
]

member_of_any(principal, groups) if {
	some g in object.get(principal, "groups", [])
	g in groups
}

# The groups pushed down into the indexes (null: every group).
visible_groups(principal) := null if all_groups(principal)

visible_groups(principal) := sort(object.get(principal, "groups", [])) if not all_groups(principal)
