# HIPAA: protected health information (label `phi`) and personal identifiers (`pii`).
#
# PHI is shown only to roles with a treatment relationship or a privacy duty, and only for
# a purpose of use that role may declare (data.config.hipaa.phi_access). Everyone else gets
# the minimum necessary: a PHI passage is left out, or, where the document is marked
# redactable, served with every detected identifier masked. Documents with identifiers but
# no PHI (`pii`) are served masked to roles without PII access.
package sanctum.hipaa

import rego.v1

cfg := data.config.hipaa

labels(doc) := object.get(doc, "labels", [])

is_phi(doc) if {
	some label in labels(doc)
	label in cfg.phi_labels
}

is_pii(doc) if {
	some label in labels(doc)
	label in cfg.pii_labels
}

redactable(doc) if cfg.redactable_label in labels(doc)

purpose := object.get(input, "purpose", "none")

roles(principal) := object.get(principal, "roles", [])

may_see(principal, access) if {
	some role in roles(principal)
	purpose in object.get(access, role, [])
}

may_see_phi(principal) if may_see(principal, cfg.phi_access)

may_see_pii(principal) if may_see(principal, cfg.pii_access)

# The effect on one document: allow, redact or deny, with the reason.
outcome(principal, doc) := {"effect": "allow", "reasons": []} if {
	not is_phi(doc)
	not is_pii(doc)
}

outcome(principal, doc) := {"effect": "allow", "reasons": []} if {
	is_phi(doc)
	may_see_phi(principal)
}

outcome(principal, doc) := {"effect": "allow", "reasons": []} if {
	not is_phi(doc)
	is_pii(doc)
	may_see_pii(principal)
}

outcome(principal, doc) := {"effect": "redact", "reasons": [sprintf("PHI redacted (minimum necessary): roles %v with purpose of use %q may not see PHI; %v", [roles(principal), purpose, phi_rule])]} if {
	is_phi(doc)
	not may_see_phi(principal)
	redactable(doc)
}

outcome(principal, doc) := {"effect": "deny", "reasons": [sprintf("PHI withheld (minimum necessary): roles %v with purpose of use %q may not see PHI and the document is not marked %q; %v", [roles(principal), purpose, cfg.redactable_label, phi_rule])]} if {
	is_phi(doc)
	not may_see_phi(principal)
	not redactable(doc)
}

outcome(principal, doc) := {"effect": "redact", "reasons": [sprintf("identifiers redacted: roles %v with purpose of use %q may not see personal identifiers", [roles(principal), purpose])]} if {
	not is_phi(doc)
	is_pii(doc)
	not may_see_pii(principal)
}

phi_rule := sprintf("PHI access by role and purpose: %v", [cfg.phi_access])

# Labels whose documents are left out of the search entirely for `principal` unless they are
# redactable (pushed down into the indexes).
withheld_labels(principal) := [] if may_see_phi(principal)

withheld_labels(principal) := cfg.phi_labels if not may_see_phi(principal)

# Whether identifiers in a generated answer are masked for `principal`.
redact_output(principal) if not may_see_phi(principal)

# Why the query and answer text of a request touching `labels` must be kept only as a hash
# in the audit log (empty: the configured setting decides).
audit_hash_reasons(labels) := [sprintf("the request touched %q content: its text is kept only as a hash", [l]) |
	some l in labels
	l in data.config.hipaa.audit_hash_labels
]

# Training data for the answer model is a use of PHI: a document labelled PHI or PII feeds an
# export only for a role and purpose of use in data.config.training.phi_access. Data without
# that table lets no such document in (fail closed).
training_phi_access := object.get(object.get(data.config, "training", {}), "phi_access", {})

may_train_on(principal) if may_see(principal, training_phi_access)

identified(doc) if is_phi(doc)

identified(doc) if is_pii(doc)

# Why `doc` may not feed training data for `principal` (empty: it may).
train_denials(principal, doc) := [] if not identified(doc)

train_denials(principal, doc) := [] if {
	identified(doc)
	may_train_on(principal)
}

train_denials(principal, doc) := [training_denial("PHI", principal)] if {
	is_phi(doc)
	not may_train_on(principal)
}

train_denials(principal, doc) := [training_denial("personal identifiers", principal)] if {
	not is_phi(doc)
	is_pii(doc)
	not may_train_on(principal)
}

training_denial(kind, principal) := sprintf("%s may not feed training data: roles %v with purpose of use %q are not in training.phi_access (training data by role and purpose: %v)", [kind, roles(principal), purpose, training_phi_access])
