package sanctum.hipaa_test

import rego.v1

import data.sanctum.hipaa

clinician := {"id": "cy", "roles": ["clinician"]}

analyst := {"id": "ann", "roles": ["analyst"]}

admin := {"id": "ad", "roles": ["admin"]}

officer := {"id": "po", "roles": ["privacy_officer"]}

phi := {"labels": ["phi"]}

phi_redactable := {"labels": ["phi", "redactable"]}

pii := {"labels": ["pii"]}

test_plain_documents_are_allowed if {
	hipaa.outcome(analyst, {"labels": []}).effect == "allow"
}

test_phi_needs_role_and_purpose if {
	hipaa.outcome(clinician, phi).effect == "allow" with input as {"purpose": "treatment"}
	hipaa.outcome(clinician, phi).effect == "deny" with input as {"purpose": "research"}
	hipaa.outcome(clinician, phi).effect == "deny" with input as {}
	hipaa.outcome(analyst, phi).effect == "deny" with input as {"purpose": "treatment"}
}

test_minimum_necessary_redacts_redactable_phi if {
	o := hipaa.outcome(analyst, phi_redactable) with input as {"purpose": "operations"}
	o.effect == "redact"
	contains(o.reasons[0], "minimum necessary")
}

test_pii_is_masked_without_pii_access if {
	hipaa.outcome(analyst, pii).effect == "redact" with input as {"purpose": "operations"}
	hipaa.outcome(admin, pii).effect == "allow" with input as {"purpose": "operations"}
	hipaa.outcome(admin, phi).effect == "deny" with input as {"purpose": "operations"}
}

test_withheld_labels if {
	hipaa.withheld_labels(analyst) == ["phi"] with input as {"purpose": "treatment"}
	hipaa.withheld_labels(clinician) == [] with input as {"purpose": "treatment"}
}

test_output_redaction if {
	hipaa.redact_output(analyst) with input as {"purpose": "treatment"}
	not hipaa.redact_output(clinician) with input as {"purpose": "treatment"}
}

test_audit_hash_reasons if {
	count(hipaa.audit_hash_reasons(["phi", "confidential"])) == 1
	count(hipaa.audit_hash_reasons(["pii"])) == 0
	count(hipaa.audit_hash_reasons([])) == 0
}

test_training_data_needs_role_and_purpose if {
	hipaa.train_denials(analyst, {"labels": []}) == [] with input as {"purpose": "training"}
	r := hipaa.train_denials(analyst, phi) with input as {"purpose": "training"}
	count(r) == 1
	contains(r[0], "PHI may not feed training data")
	contains(r[0], "analyst")
	contains(r[0], "\"training\"")
	p := hipaa.train_denials(analyst, pii) with input as {"purpose": "training"}
	contains(p[0], "personal identifiers may not feed training data")
	hipaa.train_denials(officer, phi) == [] with input as {"purpose": "training"}
	hipaa.train_denials(officer, pii) == [] with input as {"purpose": "training"}
	count(hipaa.train_denials(officer, phi)) == 1 with input as {"purpose": "treatment"}
	count(hipaa.train_denials(clinician, phi)) == 1 with input as {"purpose": "training"}
}

test_training_data_fails_closed_without_a_table if {
	count(hipaa.train_denials(officer, phi)) == 1 with input as {"purpose": "training"} with data.config.training as {}
	count(hipaa.train_denials(officer, pii)) == 1 with input as {"purpose": "training"} with data.config.training as {}
	hipaa.train_denials(officer, {"labels": []}) == [] with input as {"purpose": "training"} with data.config.training as {}
}
