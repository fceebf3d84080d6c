import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting

/// Hunyuan-A13B's config.json: NTK-alpha rope, q/k norm after rotary under its own names, a
/// shared MLP named `shared_mlp`, per-layer lists, and the released keys transformers
/// ignores checked. Numerical equality with transformers: the hunyuan-moe-tiny goldens
/// (TransformersGoldenTests, RouterGoldenTests), ClusterEqualsEngineTests, LocalClusterTests.
@Suite("Hunyuan-A13B configuration")
struct HunyuanMoeTests {
    func config() throws -> [String: Any] { try ConfigEditing.config("hunyuan-moe-tiny") }

    func describe(_ config: [String: Any]) throws -> ModelDescription { try ConfigEditing.describe(config) }

    func refusedField(_ config: [String: Any]) -> String? { ConfigEditing.refusedField(config) }

    @Test func theHubConfigDescribesTheBlocks() throws {
        let d = try describe(try config())
        #expect(d.architecture == .hunyuanMoe && d.sparseLayers == [0, 1, 2])
        #expect(d.attention.queryKeyNorm && d.attention.queryKeyNormAfterRotary)
        #expect(d.attention.queryNormName == "query_layernorm" && d.attention.keyNormName == "key_layernorm")
        #expect(d.attention.queryKeyValueBias && d.attention.outputBias)
        // rope_theta · alpha^(d/(d−2)), d = 16.
        #expect(abs(d.attention.ropeTheta - 10_000 * pow(1000, 16.0 / 14)) < 1e-3)
        #expect(d.router.scoring == .softmax && d.router.normalizeTopK && !d.hasCorrectionBias)
        #expect(d.routerName(layer: 1) == "model.layers.1.mlp.gate.wg.weight")
        #expect(d.sharedExpertIntermediateSize == 32 && d.moeIntermediateSize == 32)
    }

    @Test func perLayerListsOfOneValueAreReadAndDifferingOnesRefused() throws {
        var c = try config()
        c["moe_topk"] = [2, 2, 2]
        c["num_experts"] = [8, 8, 8]
        #expect(try describe(c) == describe(try config()))
        c["moe_topk"] = [2, 4, 2]
        #expect(refusedField(c) == "moe_topk")
        c["moe_topk"] = [2, 2]
        #expect(refusedField(c) == "moe_topk")
    }

    /// (field, JSON value)
    @Test(arguments: [("use_cla", "true"), ("use_qk_norm", "false"), ("use_mixed_mlp_moe", "false"),
                      ("num_shared_expert", "[2, 2, 2]"), ("moe_intermediate_size", "[64, 64, 64]"),
                      ("rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0}"), ("hidden_act", "\"gelu\"")])
    func whatTransformersDoesNotComputeIsRefusedByName(field: String, value: String) throws {
        var c = try config()
        c[field] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        let refused = refusedField(c)
        #expect(refused == (field == "rope_scaling" ? "rope_parameters.alpha" : field))
    }
}
