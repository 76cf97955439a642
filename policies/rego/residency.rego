# Data residency: where a document's data may be held, and to whom it may be served.
#
# A document tagged with a region follows that region's rule in data.json
# (data.config.residency.regions): `hold_in` lists the appliance regions that may store it,
# `serve_to` the principal home regions that may see it. A document without a region has
# no residency constraint. A region without a rule is refused: unknown means no.
package sanctum.residency

import rego.v1

regions := data.config.residency.regions

region_of(doc) := object.get(doc, "region", null)

# Why this appliance may not hold `doc` ([] when it may).
# (Reasons are built by comprehensions whose bodies hold or not, never from a function
# that may be undefined: both evaluators then agree.)
hold_denials(doc) := array.concat(unknown_region(doc), not_held_here(doc))

unknown_region(doc) := [sprintf("region %q has no residency rule (data.config.residency.regions); its documents cannot be held", [region]) |
	region := region_of(doc)
	region != null
	not regions[region]
]

not_held_here(doc) := [sprintf("documents of region %q may only be held in %v; this appliance is in %q", [region, regions[region].hold_in, input.appliance.region]) |
	region := region_of(doc)
	region != null
	regions[region]
	not input.appliance.region in regions[region].hold_in
]

# Why `principal` may not be served `doc` ([] when they may).
serve_denials(principal, doc) := array.concat(hold_denials(doc), not_served_to(principal, doc))

not_served_to(principal, doc) := [sprintf("documents of region %q may only be served to principals in %v; yours is %q", [region, regions[region].serve_to, object.get(principal, "region", "none")]) |
	region := region_of(doc)
	region != null
	regions[region]
	input.appliance.region in regions[region].hold_in
	not object.get(principal, "region", "") in regions[region].serve_to
]

# The regions whose documents `principal` may be served here (pushed down into the indexes;
# documents without a region always pass).
servable_regions(principal) := sort([region |
	some region, rule in regions
	input.appliance.region in rule.hold_in
	object.get(principal, "region", "") in rule.serve_to
])

# Content of these regions must not leave the appliance.
egress_restricted(region) if not regions[region]

egress_restricted(region) if regions[region].egress != true
