# Escalation: may a question the small answer model could not answer well (its answer cited
# nothing, or it declined although strong evidence was retrieved) be re-asked of a larger
# model, with the same passages?
#
# The target is either local (a second model file on this appliance: nothing leaves it) or
# a host on the network (an on-prem GPU server behind the `http` backend: the passages
# travel to it, and the `egress` decision still applies to the connection). Escalation is
# allowed only for the roles and purposes in data.config.escalation, never for a principal
# the retrieve decision would refuse, and never with PHI or personal identifiers, or with
# content of a residency-restricted region, to a host that is not in `trusted_origins`.
package sanctum.escalation

import rego.v1

import data.sanctum.hipaa
import data.sanctum.residency

cfg := object.get(data.config, "escalation", {})

roles := object.get(cfg, "roles", [])

purposes := object.get(cfg, "purposes", [])

trusted_origins := object.get(cfg, "trusted_origins", [])

reasons := object.get(cfg, "reasons", ["ungrounded", "declined"])

target := object.get(input, "target", {})

local if target.local == true

trusted if target.origin in trusted_origins

role_denials(principal) := [] if {
	some role in hipaa.roles(principal)
	role in roles
}

role_denials(principal) := [sprintf("roles %v may not escalate (escalation.roles: %v)", [hipaa.roles(principal), roles])] if {
	not any_role(principal)
}

any_role(principal) if {
	some role in hipaa.roles(principal)
	role in roles
}

purpose_denials := [sprintf("purpose of use %q may not escalate (escalation.purposes: %v)", [hipaa.purpose, purposes]) | not hipaa.purpose in purposes]

reason_denials := [sprintf("%q is not a reason to escalate (escalation.reasons: %v)", [object.get(input, "reason", ""), reasons]) | not object.get(input, "reason", "") in reasons]

# What may not travel to a host that is not trusted.
document_denials(doc) := [] if local

document_denials(doc) := [] if {
	not local
	trusted
}

document_denials(doc) := array.concat(identified, restricted) if {
	not local
	not trusted
	identified := [sprintf("passages with %v may not go to %s, which escalation.trusted_origins does not list", [hipaa.labels(doc), object.get(target, "origin", "the remote host")]) |
		hipaa.identified(doc)
	]
	restricted := [sprintf("passages of region %q are residency-restricted and may not go to %s", [doc.region, object.get(target, "origin", "the remote host")]) |
		residency.egress_restricted(doc.region)
	]
}

denials(principal_denials) := array.concat(array.concat(principal_denials, array.concat(role_denials(input.principal), purpose_denials)), array.concat(reason_denials, [r |
	some doc in object.get(input, "documents", [])
	some r in document_denials(doc)
]))
