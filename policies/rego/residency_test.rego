package sanctum.residency_test

import rego.v1

import data.sanctum.residency

us := {"appliance": {"region": "us"}}

test_unregioned_documents_may_be_held if {
	residency.hold_denials({"labels": []}) == [] with input as us
}

test_a_region_is_held_where_its_rule_allows if {
	residency.hold_denials({"region": "us"}) == [] with input as us
	residency.hold_denials({"region": "global"}) == [] with input as us
}

test_eu_documents_are_refused_on_a_us_appliance if {
	reasons := residency.hold_denials({"region": "eu"}) with input as us
	count(reasons) == 1
	contains(reasons[0], "may only be held in")
	contains(reasons[0], "\"us\"")
}

test_unknown_regions_are_refused if {
	reasons := residency.hold_denials({"region": "mars"}) with input as us
	contains(reasons[0], "no residency rule")
}

test_serving_follows_the_principal_region if {
	residency.serve_denials({"region": "us"}, {"region": "us"}) == [] with input as us
	count(residency.serve_denials({"region": "ca"}, {"region": "us"})) == 1 with input as us
	count(residency.serve_denials({}, {"region": "us"})) == 1 with input as us
	residency.serve_denials({}, {"labels": []}) == [] with input as us
}

test_servable_regions if {
	residency.servable_regions({"region": "us"}) == ["global", "us"] with input as us
	residency.servable_regions({"region": "uk"}) == ["global", "uk"] with input as {"appliance": {"region": "eu"}}
	residency.servable_regions({}) == [] with input as us
}

test_egress_restriction if {
	residency.egress_restricted("us")
	residency.egress_restricted("atlantis")
	not residency.egress_restricted("global")
}
