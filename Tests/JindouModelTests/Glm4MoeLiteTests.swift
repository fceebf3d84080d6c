import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting

/// GLM-4.7-Flash's config.json: DeepSeek-V3's latent attention and router keys with
/// Glm4MoeLiteConfig's defaults, layers from `mlp_layer_types`. Numerical equality with
/// transformers: the glm4-moe-lite-tiny goldens, ClusterEqualsEngineTests, LocalClusterTests.
@Suite("GLM-4.7-Flash configuration")
struct Glm4MoeLiteTests {
    func config() throws -> [String: Any] { try ConfigEditing.config("glm4-moe-lite-tiny") }

    func describe(_ config: [String: Any]) throws -> ModelDescription { try ConfigEditing.describe(config) }

    @Test func layersFollowMlpLayerTypesAndAttentionIsLatent() throws {
        let d = try describe(try config())
        #expect(d.architecture == .glm4MoeLite)
        #expect(d.sparseLayers == [0, 2])  // ["sparse", "dense", "sparse"]
        #expect(d.latentAttention?.queryLoraRank == 48 && d.attention.interleavedRotary)
        #expect(d.router.scoring == .sigmoid && d.hasCorrectionBias && d.router.groupCount == 2)
        #expect(d.ignoredPredictionLayers == 1)
        var c = try config()
        c.removeValue(forKey: "mlp_layer_types")  // Glm4MoeLiteConfig: the first layer dense
        #expect(try describe(c).sparseLayers == [1, 2])
    }

    @Test(arguments: ["[\"sparse\", \"dense\"]", "[\"sparse\", \"moe\", \"dense\"]", "3"])
    func badLayerTypesAreRefusedByName(value: String) throws {
        var c = try config()
        c["mlp_layer_types"] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        #expect {
            try describe(c)
        } throws: { error in
            if case CheckpointError.badConfig(_, "mlp_layer_types", _) = error { return true }
            return false
        }
    }
}
