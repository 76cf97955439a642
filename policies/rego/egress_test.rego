package sanctum.egress_test

import rego.v1

import data.sanctum.egress

gpu := {"scheme": "https", "host": "gpu1.internal", "port": 8000, "origin": "https://gpu1.internal:8000"}

test_default_deny if {
	d := egress.decision with input as {"endpoint": gpu}
	not d.allow
	contains(d.reasons[0], "not a named endpoint")
}

test_named_on_prem_endpoint if {
	d := egress.decision with input as {"endpoint": gpu, "configured": ["https://gpu1.internal:8000"]}
	d.allow
	d.reasons == []
}

test_named_but_not_on_prem if {
	cloud := {"scheme": "https", "host": "api.example.com", "port": 443, "origin": "https://api.example.com:443"}
	d := egress.decision with input as {"endpoint": cloud, "configured": ["https://api.example.com:443"]}
	not d.allow
	contains(d.reasons[0], "not on-prem")
}

test_private_addresses_are_on_prem if {
	ep := {"scheme": "http", "host": "10.1.2.3", "port": 8080, "origin": "http://10.1.2.3:8080"}
	egress.decision.allow with input as {"endpoint": ep, "configured": ["http://10.1.2.3:8080"]}
}

test_never_phi_or_restricted_content if {
	d := egress.decision with input as {"endpoint": gpu, "configured": ["https://gpu1.internal:8000"], "content": {"labels": ["phi"], "regions": ["eu"]}}
	not d.allow
	count(d.reasons) == 2
	egress.decision.allow with input as {"endpoint": gpu, "configured": ["https://gpu1.internal:8000"], "content": {"labels": ["public"], "regions": ["global"]}}
}
