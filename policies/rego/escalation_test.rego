package sanctum.escalation_test

import rego.v1

import data.sanctum.decision

base := {"appliance": {"region": "us"}}

analyst := {"id": "ann", "roles": ["analyst"], "region": "us", "groups": ["cardiology"]}

auditor := {"id": "au", "roles": ["auditor"], "region": "us", "groups": []}

gpu := {"model": "large", "backend": "http", "local": false, "origin": "https://gpu.internal:443"}

second_file := {"model": "qwen.gguf", "backend": "llama_cpp", "local": true}

plain := {"groups": [], "labels": []}

phi := {"groups": [], "labels": ["phi", "redactable"]}

us_only := {"groups": [], "region": "us", "labels": []}

ask(principal, target, docs, reason) := d if {
	d := decision.escalate with input as object.union(base, {"principal": principal, "purpose": "operations", "target": target, "documents": docs, "reason": reason})
}

test_plain_passages_may_go_to_the_gpu_host if {
	d := ask(analyst, gpu, [plain, {"groups": [], "region": "global", "labels": []}], "ungrounded")
	d.allow
	d.reasons == []
}

test_phi_never_goes_to_an_untrusted_host if {
	d := ask(analyst, gpu, [plain, phi], "declined")
	not d.allow
	count(d.reasons) == 1
	contains(d.reasons[0], "trusted_origins")
}

test_restricted_regions_stay if {
	d := ask(analyst, gpu, [us_only], "ungrounded")
	not d.allow
	contains(d.reasons[0], "residency-restricted")
}

test_a_local_model_may_see_what_the_principal_sees if {
	ask(analyst, second_file, [phi, us_only], "ungrounded").allow
}

test_a_trusted_host_may_receive_phi if {
	d := decision.escalate with input as object.union(base, {"principal": analyst, "purpose": "operations", "target": gpu, "documents": [phi], "reason": "declined"})
		with data.config.escalation.trusted_origins as ["https://gpu.internal:443"]
	d.allow
}

test_roles_purposes_and_reasons if {
	not ask(auditor, second_file, [plain], "ungrounded").allow
	d := decision.escalate with input as object.union(base, {"principal": analyst, "purpose": "training", "target": second_file, "documents": [plain], "reason": "ungrounded"})
	not d.allow
	contains(d.reasons[0], "escalation.purposes")
	r := ask(analyst, second_file, [plain], "curiosity")
	not r.allow
	contains(r.reasons[0], "not a reason")
}

test_without_configuration_nothing_escalates if {
	d := decision.escalate with input as object.union(base, {"principal": analyst, "purpose": "operations", "target": second_file, "documents": [plain], "reason": "ungrounded"})
		with data.config.escalation as {}
	not d.allow
}
