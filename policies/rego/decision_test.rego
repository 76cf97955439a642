package sanctum.decision_test

import rego.v1

import data.sanctum.decision

base := {"appliance": {"region": "us"}}

clinician := {"id": "cy", "roles": ["clinician"], "region": "us", "groups": ["cardiology"]}

analyst := {"id": "ann", "roles": ["analyst"], "region": "us", "groups": ["cardiology"]}

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
