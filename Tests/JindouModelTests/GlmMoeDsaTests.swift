import Foundation
import JindouModel
import JindouNumerics
import JindouTestSupport
import Testing

/// GLM-5 (`glm_moe_dsa`) on the transformers-written `glm-moe-dsa-tiny`: DeepSeek-V3.2's
/// sparse attention with the indexer's rotary on interleaved pairs, and layers 1 and 3
/// ("shared" in `indexer_types`) attending to what layers 0 and 2 chose. The shared golden
/// tests run it in the automatic MLA mode; here both forms alone, chunked prefill, the
/// indexer schedules transformers derives, and the refusals.
@Suite("GLM-5: sparse attention with shared selections")
struct GlmMoeDsaTests {
    static let fixture = "glm-moe-dsa-tiny"

    @Test("each MLA form equals transformers", arguments: DeepseekV3Tests.forms)
    func formEqualsTransformers(mode: LatentAttentionMode) async throws {
        try await DeepseekV3Tests().formEqualsTransformers(fixture: Self.fixture, mode: mode)
    }

    @Test func describesInterleavedIndexerAndSharedLayers() throws {
        let description = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path(Self.fixture)))
        #expect(description.architecture == .glmMoeDsa)
        let indexer = try #require(description.latentAttention?.indexer)
        #expect(indexer.interleavedRotary)
        #expect(indexer.sharedLayers == [1, 3])
        #expect(description.layerTensors(1, kind: .sparse).allSatisfy { !$0.name.contains("indexer") })
        #expect(description.layerTensors(2, kind: .sparse).contains { $0.name.hasSuffix("indexer.wq_b.weight") })
    }

    /// DeepSeek-V3.2's half-split rotary on the same weights selects other positions.
    @Test("the indexer's interleaved rotary matters")
    func interleavedRotaryMatters() async throws {
        try await SparseAttentionChecks.changedIndexerMovesLogits(fixture: Self.fixture) { $0?.interleavedRotary = false }
    }

    @Test("chunked prefill equals whole-prompt prefill", arguments: DeepseekV3Tests.forms)
    func chunkedPrefill(mode: LatentAttentionMode) async throws {
        try await SparseAttentionChecks.chunkedPrefillEqualsWhole(fixture: Self.fixture, mode: mode)
    }

    /// `index_topk_freq` / `index_skip_topk_offset` / `index_topk_pattern` give the layers
    /// GlmMoeDsaConfig.__post_init__ gives (configs/glm5_indexer_types.json, written by it);
    /// a schedule whose first layer is shared, which transformers fails on, is refused.
    @Test func indexerSchedulesEqualTransformers() throws {
        let url = URL(fileURLWithPath: Fixtures.path("configs") + "/glm5_indexer_types.json")
        let file = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let schedules = try #require(file["configs"] as? [[String: Any]])
        #expect(schedules.count >= 5)
        for schedule in schedules {
            var config = try ConfigEditing.config(Self.fixture)
            config["indexer_types"] = nil
            for (key, value) in try #require(schedule["config"] as? [String: Any]) { config[key] = value }
            let layers = try #require(config["num_hidden_layers"] as? Int)
            config["mlp_layer_types"] = ["dense"] + Array(repeating: "sparse", count: layers - 1)
            config["layer_types"] = Array(repeating: "indexed_attention", count: layers)
            let expected = try #require(schedule["indexer_types"] as? [String])
            if expected.first == "shared" {
                // GlmMoeDsaAttention raises at the first forward ("Shared DSA layers require top-k
                // indices from a previous full indexer layer"); Jindou refuses the config.
                #expect(ConfigEditing.refusedField(config) == "indexer_types", "\(schedule["config"]!)")
                continue
            }
            let shared = try ConfigEditing.describe(config).latentAttention?.indexer?.sharedLayers
            #expect(shared == Set(expected.indices.filter { expected[$0] == "shared" }), "\(schedule["config"]!)")
        }
    }

    @Test func unsupportedConfigurationsAreRefusedByField() throws {
        var config = try ConfigEditing.config(Self.fixture)
        config["indexer_types"] = ["shared", "full", "full", "full"]
        #expect(ConfigEditing.refusedField(config) == "indexer_types")
        config["indexer_types"] = ["full", "sparse", "full", "full"]
        #expect(ConfigEditing.refusedField(config) == "indexer_types")
        config["indexer_types"] = ["full", "full"]
        #expect(ConfigEditing.refusedField(config) == "indexer_types")
        config = try ConfigEditing.config(Self.fixture)
        config["indexer_types"] = nil
        config["index_topk_pattern"] = "FSX?"
        #expect(ConfigEditing.refusedField(config) == "index_topk_pattern")
        config = try ConfigEditing.config(Self.fixture)
        config["q_lora_rank"] = NSNull()
        #expect(ConfigEditing.refusedField(config) == "q_lora_rank")
    }
}
