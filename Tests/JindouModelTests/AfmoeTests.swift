import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting

/// Trinity's (`afmoe`) config.json: sandwich norms under their names, the gated attention
/// output, layer types from `global_attn_every_n_layers` with rotary on sliding layers
/// only, μP embedding scaling, and what the modeling file does not compute refused by name.
/// Numerical equality with transformers: the afmoe-tiny goldens (TransformersGoldenTests,
/// RouterGoldenTests), ClusterEqualsEngineTests, NetnsClusterTests, LocalClusterTests.
@Suite("Trinity (afmoe) configuration")
struct AfmoeTests {
    func config() throws -> [String: Any] { try ConfigEditing.config("afmoe-tiny") }

    func describe(_ config: [String: Any]) throws -> ModelDescription { try ConfigEditing.describe(config) }

    @Test func theHubConfigDescribesSandwichNormsGatedOutputAndNoPEGlobals() throws {
        let hub = try config()
        #expect(hub["rope_theta"] != nil && hub["rope_parameters"] == nil, "fixture should be in the Hub style")
        let d = try describe(hub)
        #expect(d.architecture == .afmoe && d.sparseLayers == [1, 2, 3] && d.layers[0] == .dense(intermediateSize: 96))
        #expect(d.layerNorms.input == "input_layernorm" && d.layerNorms.preFeedForward == "pre_mlp_layernorm")
        #expect(d.layerNorms.attentionOutput == "post_attention_layernorm" && d.layerNorms.feedForwardOutput == "post_mlp_layernorm")
        #expect(d.attention.outputGate && d.attention.queryKeyNorm && !d.attention.queryKeyValueBias)
        // global_attn_every_n_layers 2: layers 0 and 2 slide (window 5) and rotate; 1 and 3 are global NoPE.
        #expect(d.attention.layerWindows == [5, nil, 5, nil] && d.attention.layerRotary == [true, false, true, false])
        #expect(d.router.scoring == .sigmoid && d.router.routedScalingFactor == 2 && d.hasCorrectionBias)
        #expect(d.routerName(layer: 1) == "model.layers.1.mlp.router.gate.weight")
        #expect(d.correctionBiasName(layer: 1) == "model.layers.1.mlp.expert_bias")
        #expect(d.embeddingScale == 8 && d.sharedExpertIntermediateSize == 32)
        var plain = hub
        plain["mup_enabled"] = false
        plain.removeValue(forKey: "layer_types")
        plain["global_attn_every_n_layers"] = 4
        let other = try describe(plain)
        #expect(other.embeddingScale == nil && other.attention.layerWindows == [5, 5, 5, nil])
    }

    /// (field, JSON value)
    @Test(arguments: [("hidden_act", "\"gelu\""), ("layer_types", "[\"full_attention\"]"), ("sliding_window", "0"),
                      ("rope_scaling", "{\"type\": \"longrope\", \"factor\": 2.0}")])
    func whatItCannotMeanIsRefusedByName(field: String, value: String) throws {
        var c = try config()
        c[field] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        #expect(ConfigEditing.refusedField(c) == (field == "rope_scaling" ? "rope_parameters.rope_type" : field))
    }
}
