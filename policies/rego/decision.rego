# The decision points: the only rules the appliance evaluates. Each returns
# {allow, redact, reasons}; `retrieve` also returns the scope pushed down into the indexes.
#
#   ingest    may this document be held here?            input: appliance, document
#   retrieve  what may this principal search?            input: appliance, principal, purpose
#   chunks    each final passage: allow, redact or drop  input: ..., documents (a batch)
#   answer    is the generated text masked?              input: appliance, principal, purpose
#   egress    may this connection be opened?             input: endpoint, configured, content
#   audit     is request text hashed in the audit log?   input: ..., labels (of what it touched)
#   trains    point `train`: may each document feed      input: appliance, principal, purpose,
#             training data for fine-tuning the answer          documents (a batch)
#             model? (optional: older sets lack it, and then only `train` is denied)
#   escalate  may a question be re-asked of the larger   input: appliance, principal, purpose,
#             model with these passages? (optional:             target, documents, reason
#             older sets lack it, and then nothing is escalated)
package sanctum.decision

import rego.v1

import data.sanctum.access
import data.sanctum.egress as outbound
import data.sanctum.escalation
import data.sanctum.hipaa
import data.sanctum.residency

ingest := {"allow": count(reasons) == 0, "redact": false, "reasons": reasons} if {
	reasons := residency.hold_denials(input.document)
}

purpose_denials := [sprintf("purpose of use %q is not one of %v", [input.purpose, data.config.purposes]) |
	input.purpose
	not input.purpose in data.config.purposes
]

principal_denials := array.concat(access.search_denials(input.principal), purpose_denials)

retrieve := {
	"allow": count(principal_denials) == 0,
	"redact": false,
	"reasons": principal_denials,
	"groups": access.visible_groups(input.principal),
	"regions": residency.servable_regions(input.principal),
	"withheld_labels": hipaa.withheld_labels(input.principal),
	"redactable_label": data.config.hipaa.redactable_label,
}

base_denials(doc) := array.concat(principal_denials, array.concat(residency.serve_denials(input.principal, doc), access.group_denials(input.principal, doc)))

chunk(doc) := {"allow": false, "redact": false, "reasons": denials} if {
	denials := base_denials(doc)
	count(denials) > 0
}

chunk(doc) := {"allow": outcome.effect != "deny", "redact": outcome.effect == "redact", "reasons": outcome.reasons} if {
	count(base_denials(doc)) == 0
	outcome := hipaa.outcome(input.principal, doc)
}

chunks := [chunk(doc) | some doc in input.documents]

# Training data is a use of what it holds: a document feeds an export only if the principal
# could be served it and, where it carries PHI or identifiers, hipaa.train_denials allows it.
train(doc) := {"allow": count(denials) == 0, "redact": false, "reasons": denials} if {
	denials := array.concat(base_denials(doc), hipaa.train_denials(input.principal, doc))
}

trains := [train(doc) | some doc in input.documents]

escalate := {"allow": count(denials) == 0, "redact": false, "reasons": denials} if {
	denials := escalation.denials(principal_denials)
}

answer := {"allow": count(principal_denials) == 0, "redact": true, "reasons": ["identifiers in the answer are masked: this principal may not see PHI for this purpose of use"]} if {
	hipaa.redact_output(input.principal)
}

answer := {"allow": count(principal_denials) == 0, "redact": false, "reasons": principal_denials} if {
	not hipaa.redact_output(input.principal)
}

egress := outbound.decision

audit := {"allow": true, "redact": true, "reasons": reasons} if {
	reasons := hipaa.audit_hash_reasons(input.labels)
	count(reasons) > 0
}

audit := {"allow": true, "redact": false, "reasons": []} if {
	count(hipaa.audit_hash_reasons(input.labels)) == 0
}
