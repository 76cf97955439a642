package sanctum.decision_test

import rego.v1

import data.sanctum.decision

base := {"appliance": {"region": "us"}}

clinician := {"id": "cy", "roles": ["clinician"], "region": "us", "groups": ["cardiology"]}

analyst := {"id": "ann", "roles": ["analyst"], "region": "us", "groups": ["cardiology"]}

officer := {"id": "po", "roles": ["privacy_officer"], "region": "us", "groups": []}

training_docs := [
	{"groups": [], "labels": []},
	{"groups": [], "labels": ["phi"]},
	{"groups": [], "labels": ["phi", "redactable"]},
	{"groups": [], "labels": ["pii"]},
]

test_ingest if {
	decision.ingest.allow with input as object.union(base, {"document": {"region": "us", "labels": ["phi"]}})
	d := decision.ingest with input as object.union(base, {"document": {"region": "eu"}})
	not d.allow
	count(d.reasons) == 1
}

test_retrieve_scope if {
	s := decision.retrieve with input as object.union(base, {"principal": analyst, "purpose": "operations"})
	s.allow
	s.groups == ["cardiology"]
	s.regions == ["global", "us"]
	s.withheld_labels == ["phi"]
	c := decision.retrieve with input as object.union(base, {"principal": clinician, "purpose": "treatment"})
	c.withheld_labels == []
}

test_retrieve_denies_unknown_purpose if {
	s := decision.retrieve with input as object.union(base, {"principal": analyst, "purpose": "curiosity"})
	not s.allow
	contains(s.reasons[0], "purpose of use")
}

test_chunks_batch if {
	docs := [
		{"groups": [], "labels": []},
		{"groups": ["oncology"], "labels": []},
		{"region": "eu", "groups": [], "labels": []},
		{"groups": [], "labels": ["phi"]},
		{"groups": [], "labels": ["phi", "redactable"]},
	]
	ds := decision.chunks with input as object.union(base, {"principal": analyst, "purpose": "operations", "documents": docs})
	[d.allow | some d in ds] == [true, false, false, false, true]
	[d.redact | some d in ds] == [false, false, false, false, true]
}

test_answer if {
	decision.answer.redact with input as object.union(base, {"principal": analyst, "purpose": "treatment"})
	not decision.answer.redact with input as object.union(base, {"principal": clinician, "purpose": "treatment"})
}

test_audit_hashes_text_that_touched_phi if {
	h := decision.audit with input as object.union(base, {"principal": clinician, "purpose": "treatment", "labels": ["confidential", "phi"]})
	h.redact
	count(h.reasons) == 1
	k := decision.audit with input as object.union(base, {"principal": analyst, "purpose": "operations", "labels": ["pii"]})
	not k.redact
}

test_train_keeps_phi_out_of_training_data if {
	ds := decision.trains with input as object.union(base, {"principal": analyst, "purpose": "training", "documents": training_docs})
	[d.allow | some d in ds] == [true, false, false, false]
	[d.redact | some d in ds] == [false, false, false, false]
	ds[0].reasons == []
	contains(ds[1].reasons[0], "PHI may not feed training data")
	contains(ds[1].reasons[0], "training.phi_access")
	contains(ds[3].reasons[0], "personal identifiers may not feed training data")
}

test_train_lets_the_privacy_officer_export_phi_for_training if {
	ds := decision.trains with input as object.union(base, {"principal": officer, "purpose": "training", "documents": training_docs})
	[d.allow | some d in ds] == [true, true, true, true]
	t := decision.trains with input as object.union(base, {"principal": officer, "purpose": "treatment", "documents": training_docs})
	[d.allow | some d in t] == [true, false, false, false]
}

test_train_applies_groups_region_and_purpose if {
	docs := [
		{"groups": ["oncology"], "labels": []},
		{"region": "eu", "groups": [], "labels": []},
		{"region": "us", "groups": ["cardiology"], "labels": []},
	]
	ds := decision.trains with input as object.union(base, {"principal": analyst, "purpose": "training", "documents": docs})
	[d.allow | some d in ds] == [false, false, true]
	count(ds[0].reasons) > 0
	count(ds[1].reasons) > 0
	u := decision.trains with input as object.union(base, {"principal": officer, "purpose": "curiosity", "documents": training_docs})
	[d.allow | some d in u] == [false, false, false, false]
	contains(u[0].reasons[0], "purpose of use")
}

test_train_without_a_training_table_keeps_phi_out if {
	ds := decision.trains with input as object.union(base, {"principal": officer, "purpose": "training", "documents": training_docs}) with data.config.training as {}
	[d.allow | some d in ds] == [true, false, false, false]
}
