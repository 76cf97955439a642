# Egress: every outbound connection the appliance would open. Default deny.
#
# A connection is allowed only to an endpoint that is named (in the operator's
# `egress.allow`, passed as input.configured, or in data.config.egress.endpoints) AND is
# on-prem (loopback, private address, or an internal domain), and never when the content
# sent carries PHI/PII labels or belongs to a residency-restricted region.
package sanctum.egress

import rego.v1

import data.sanctum.residency

cfg := data.config.egress

host := lower(input.endpoint.host)

named if input.endpoint.origin in cfg.endpoints

named if input.endpoint.origin in object.get(input, "configured", [])

on_prem if host in cfg.on_prem_hosts

on_prem if {
	some suffix in cfg.on_prem_host_suffixes
	endswith(host, suffix)
}

on_prem if {
	some prefix in cfg.on_prem_host_prefixes
	startswith(host, prefix)
}

content_labels := object.get(object.get(input, "content", {}), "labels", [])

content_regions := object.get(object.get(input, "content", {}), "regions", [])

not_named := [sprintf("%s is not a named endpoint (egress.allow or data.config.egress.endpoints)", [input.endpoint.origin]) | not named]

not_on_prem := [sprintf("host %q is not on-prem (loopback, a private address or an internal domain)", [host]) | not on_prem]

sensitive := [sprintf("content labelled %q may never leave the appliance", [label]) |
	some label in content_labels
	label in cfg.never_labels
]

restricted := [sprintf("content of region %q is residency-restricted and may not leave the appliance", [region]) |
	some region in content_regions
	residency.egress_restricted(region)
]

denials := array.concat(array.concat(not_named, not_on_prem), array.concat(sensitive, restricted))

decision := {"allow": count(denials) == 0, "redact": false, "reasons": denials}
