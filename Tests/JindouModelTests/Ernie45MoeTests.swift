import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting

/// ERNIE-4.5-MoE's config.json: layer kinds from the moe_layer_* keys, interleaved rotary,
/// a softmax router whose selection bias is stored [1, experts], and what transformers'
/// modeling file would compute differently refused by name. Numerical equality with
/// transformers: the ernie45-moe-tiny goldens, ClusterEqualsEngineTests, LocalClusterTests.
@Suite("ERNIE-4.5-MoE configuration")
struct Ernie45MoeTests {
    func config() throws -> [String: Any] { try ConfigEditing.config("ernie45-moe-tiny") }

    func describe(_ config: [String: Any]) throws -> ModelDescription { try ConfigEditing.describe(config) }

    func refusedField(_ config: [String: Any]) -> String? { ConfigEditing.refusedField(config) }

    @Test func theHubConfigDescribesTheBlocks() throws {
        let d = try describe(try config())
        #expect(d.architecture == .ernie45Moe && d.sparseLayers == [1, 2] && d.tieWordEmbeddings)
        #expect(d.attention.interleavedRotary && d.attention.rotaryDimension == d.attention.headDimension && !d.attention.queryKeyNorm)
        #expect(d.router.scoring == .softmax && d.router.normalizeTopK && d.hasCorrectionBias)
        #expect(d.correctionBiasName(layer: 1) == "model.layers.1.mlp.moe_statics.e_score_correction_bias")
        #expect(d.sharedExpertIntermediateSize == d.moeIntermediateSize)
    }

    @Test func layerKindsFollowStartEndAndInterval() throws {
        var c = try config()
        c["num_hidden_layers"] = 6
        c["moe_layer_start_index"] = 1
        c["moe_layer_end_index"] = 4
        c["moe_layer_interval"] = 2
        #expect(try describe(c).sparseLayers == [1, 3])  // (layer + 1) % 2 == 0 within 1…4
    }

    /// (field, JSON value)
    @Test(arguments: [("use_bias", "true"), ("hidden_act", "\"gelu\""), ("moe_layer_interval", "0"), ("moe_norm_min", "0.5")])
    func whatTransformersComputesDifferentlyIsRefusedByName(field: String, value: String) throws {
        var c = try config()
        c[field] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        #expect(refusedField(c) == field)
    }
}
