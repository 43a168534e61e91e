"""From L to colour: Lab conversions, lightness, ab bins, the model manifests, the inference engine, joins and upsampling."""
