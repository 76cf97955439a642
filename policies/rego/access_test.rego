package sanctum.access_test

import rego.v1

import data.sanctum.access

analyst := {"id": "ann", "roles": ["analyst"], "groups": ["cardiology"]}

officer := {"id": "pat", "roles": ["privacy_officer"], "groups": []}

test_search_roles if {
	access.search_denials(analyst) == []
	access.search_denials(officer) == []
	reasons := access.search_denials({"id": "aud", "roles": ["auditor"]})
	contains(reasons[0], "may not search")
	unknown := access.search_denials({"id": "x", "roles": ["janitor"]})
	contains(unknown[0], "no known role")
}

test_groups if {
	access.group_denials(analyst, {"groups": []}) == []
	access.group_denials(analyst, {"groups": ["cardiology", "oncology"]}) == []
	reasons := access.group_denials(analyst, {"groups": ["oncology"]})
	contains(reasons[0], "restricted to groups")
	access.group_denials(officer, {"groups": ["oncology"]}) == []
}

test_visible_groups if {
	access.visible_groups(analyst) == ["cardiology"]
	access.visible_groups(officer) == null
}
