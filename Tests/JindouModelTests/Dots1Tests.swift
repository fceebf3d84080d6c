import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting

/// dots.llm1's config.json: Qwen3 attention on DeepSeek-V3's MoE, layer types resolved as
/// `Dots1Config.__post_init__` does, and what Jindou does not compute refused by name.
/// Numerical equality with transformers: the dots1-tiny goldens (TransformersGoldenTests,
/// RouterGoldenTests), ClusterEqualsEngineTests and LocalClusterTests.
@Suite("dots.llm1 configuration")
struct Dots1Tests {
    func config() throws -> [String: Any] { try ConfigEditing.config("dots1-tiny") }

    func describe(_ config: [String: Any]) throws -> ModelDescription { try ConfigEditing.describe(config) }

    func refusedField(_ config: [String: Any]) -> String? { ConfigEditing.refusedField(config) }

    @Test func theHubConfigDescribesQwen3AttentionOnDeepSeekMoE() throws {
        let d = try describe(try config())
        #expect(d.architecture == .dots1)
        #expect(d.sparseLayers == [1, 2])  // first_k_dense_replace 1
        #expect(d.attention.queryKeyNorm && d.attention.queryKeyNormScope == .perHead)
        #expect(d.attention.queryKeyValueBias && d.attention.outputBias)  // Qwen3Attention: o_proj too
        #expect(d.attention.rotaryDimension == d.attention.headDimension && d.attention.slidingWindow == nil)
        #expect(d.router.scoring == .sigmoid && d.hasCorrectionBias && d.router.groupCount == 2 && d.router.groupsPerToken == 1)
        #expect(d.router.routedScalingFactor == 2 && d.sharedExpertIntermediateSize == d.moeIntermediateSize)
    }

    @Test func layerTypesAreResolvedAsTransformersDoes() throws {
        var c = try config()
        c.removeValue(forKey: "layer_types")
        c["sliding_window"] = 16
        c["max_window_layers"] = 3  // no layer index reaches it: every layer full
        #expect(try describe(c).attention.layerWindows == nil)
        c["max_window_layers"] = 0  // every layer slides
        #expect(try describe(c).attention.layerWindows == [16, 16, 16])
        c["max_window_layers"] = 1  // Dots1Config.__post_init__: sliding from layer 1 on
        let mixed = try describe(c).attention
        #expect(mixed.layerWindows == [nil, 16, 16] && mixed.window(layer: 0) == nil && mixed.window(layer: 2) == 16)
        c["layer_types"] = ["full_attention", "chunked_attention", "full_attention"]
        #expect(refusedField(c) == "layer_types")
        c["layer_types"] = ["full_attention"]
        #expect(refusedField(c) == "layer_types")
    }

    @Test(arguments: ["n_routed_experts", "n_shared_experts", "num_experts_per_tok"])
    func keysDotsLeavesUnsetAreRequired(key: String) throws {
        var c = try config()
        c.removeValue(forKey: key)
        #expect(refusedField(c) == key)
    }
}
