import Foundation
@testable import JindouModel
import JindouNumerics
import JindouTestSupport
import Testing

/// DeepSeek-V3.2 (`deepseek_v32`): DeepSeek Sparse Attention on the transformers-written
/// `deepseek-v32-tiny` (indexer of 32 heads × 64, top 4 positions, so every prompt longer
/// than 4 drops keys). The shared golden tests run it in the automatic MLA mode; here both
/// forms alone, chunked prefill, the indexer-key cache, and the configuration refusals.
@Suite("DeepSeek-V3.2: sparse attention (DSA)")
struct DeepseekV32Tests {
    static let fixture = "deepseek-v32-tiny"

    @Test("each MLA form with the indexer equals transformers", arguments: DeepseekV3Tests.forms)
    func formEqualsTransformers(mode: LatentAttentionMode) async throws {
        try await DeepseekV3Tests().formEqualsTransformers(fixture: Self.fixture, mode: mode)
    }

    /// Without the indexer the same weights compute dense MLA, which is far from the goldens:
    /// the selection is doing the work the goldens record.
    @Test("the indexer's selection changes the logits")
    func selectionMatters() async throws {
        let description = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path(Self.fixture)))
        #expect(description.latentAttention?.indexer == SparseIndexerShape(heads: 32, headDimension: 64, topK: 4, ropeDimension: 8))
        try await SparseAttentionChecks.changedIndexerMovesLogits(fixture: Self.fixture) { $0 = nil }
    }

    /// A prompt prefilled in chunks of 3 (later chunks score the cached indexer keys of
    /// earlier ones) gives the whole prompt's last logits.
    @Test("chunked prefill equals whole-prompt prefill", arguments: DeepseekV3Tests.forms)
    func chunkedPrefill(mode: LatentAttentionMode) async throws {
        try await SparseAttentionChecks.chunkedPrefillEqualsWhole(fixture: Self.fixture, mode: mode)
    }

    /// The cache holds the latent row and the indexer key per token and layer; the
    /// scheduler's budget counts both.
    @Test func indexerKeysAreCachedAndBudgeted() throws {
        let description = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path(Self.fixture)))
        let m = try #require(description.latentAttention)
        #expect(m.cacheRowStride == 32 + 8 + 64)
        #expect(description.keyValueCacheBytesPerToken == description.layerCount * (32 + 8 + 64) * MemoryLayout<Float>.size)
    }

    /// The heap top-k keeps what a full sort keeps, ties (ReLU makes many scores exactly 0)
    /// to the earlier position.
    @Test func topKKeepsTheBestWithTiesToTheEarlierPosition() {
        var random = SplitMix64(seed: 3)
        for _ in 0..<200 {
            let n = 1 + Int(random.next() % 300), k = 1 + Int(random.next() % 40)
            let scores = (0..<n).map { _ in max(0, Float(Int(random.next() % 7)) - 3) }
            let sorted = (0..<n).sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            // Most likely first; the indexer sorts them back into position order.
            #expect(largestIndices(scores, count: k) == Array(sorted.prefix(k)), "n \(n) k \(k)")
        }
    }

    @Test func unsupportedConfigurationsAreRefusedByField() throws {
        var config = try ConfigEditing.config(Self.fixture)
        config["layer_types"] = ["indexed_attention", "full_attention", "indexed_attention"]
        #expect(ConfigEditing.refusedField(config) == "layer_types")
        config = try ConfigEditing.config(Self.fixture)
        config["q_lora_rank"] = NSNull()
        #expect(ConfigEditing.refusedField(config) == "q_lora_rank")
        config = try ConfigEditing.config(Self.fixture)
        config["index_head_dim"] = 4
        #expect(ConfigEditing.refusedField(config) == "index_head_dim")
        config = try ConfigEditing.config(Self.fixture)
        config["index_topk"] = 0
        #expect(ConfigEditing.refusedField(config) == "index_topk")
    }
}

/// Checks every sparse-attention family shares (DeepSeek-V3.2, GLM-5).
enum SparseAttentionChecks {
    /// With the indexer changed by `edit` (removed: dense MLA; rotary pairs swapped…), the
    /// same weights give logits far from the goldens at the longest prompt's last position,
    /// while positions 0…topK−1, which see every key either way, stay equal.
    static func changedIndexerMovesLogits(fixture: String, edit: (inout SparseIndexerShape?) -> Void) async throws {
        let checkpoint = try Checkpoint(directory: Fixtures.path(fixture))
        var changed = try ModelDescription(checkpoint: checkpoint)
        let topK = try #require(changed.latentAttention?.indexer?.topK)
        edit(&changed.latentAttention!.indexer)
        let engine = InferenceEngine(model: try DecoderModel(description: changed, checkpoint: checkpoint),
                                     experts: try ExpertShard(description: changed, checkpoint: checkpoint, keys: changed.allExperts))
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        let longest = try #require(golden.cases.max { $0.promptIDs.count < $1.promptIDs.count })
        #expect(longest.promptIDs.count > 2 * topK)
        let expected = try rows(tensors.tensor("case\(longest.index).prefill_logits"))
        let actual = try await engine.promptLogits(longest.promptIDs, expertsPerToken: longest.experts)
        #expect(maxAbsDifference(actual[topK - 1], expected[topK - 1]) <= 1e-4)
        #expect(maxAbsDifference(actual.last!, expected.last!) > 1e-2)
    }

    /// A 20-token prompt prefilled in chunks of 3 (later chunks score the cached indexer keys
    /// of earlier ones) gives the whole prompt's last logits.
    static func chunkedPrefillEqualsWhole(fixture: String, mode: LatentAttentionMode) async throws {
        let checkpoint = try Checkpoint(directory: Fixtures.path(fixture))
        let description = try ModelDescription(checkpoint: checkpoint)
        var model = try DecoderModel(description: description, checkpoint: checkpoint)
        model.latentAttentionMode = mode
        let experts = try ExpertShard(description: description, checkpoint: checkpoint, keys: description.allExperts)
        let prompt = Array(3..<23)
        let whole = try await model.forward([SequenceStep(cache: model.makeCache(), tokens: prompt)], experts: experts)[0]
        let cache = model.makeCache()
        var last: [Float] = []
        for start in stride(from: 0, to: prompt.count, by: 3) {
            last = try await model.forward([SequenceStep(cache: cache, tokens: Array(prompt[start..<min(start + 3, prompt.count)]))],
                                           experts: experts)[0]
        }
        let vocabulary = description.vocabularySize
        #expect(maxAbsDifference(Array(last.suffix(vocabulary)), Array(whole.suffix(vocabulary))) <= 1e-5)
    }
}
