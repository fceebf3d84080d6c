import Foundation
import JindouModel
import JindouTestSupport
import Testing

/// Speculative decoding with prompt-lookup drafts: greedy output is identical to decoding one
/// token at a time (the logits each token is chosen from too, up to round-off), sampling keeps its
/// distribution, and the drafter and the cache rollback do what they say.
@Suite("Speculative decoding (n-gram drafts)")
struct SpeculationTests {
    @Test func draftsFollowTheLatestLongestMatch() {
        // ... 1 2 3 [9 9] ... 1 2 3 → the tokens after the latest "1 2 3".
        #expect(NgramDrafter.propose(context: [1, 2, 3, 9, 9, 4, 1, 2, 3, 7, 7, 1, 2, 3], maximumDraft: 2) == [7, 7])
        // The longest n-gram wins over a later shorter one.
        #expect(NgramDrafter.propose(context: [5, 6, 8, 1, 6, 2, 5, 6], maximumDraft: 3, maximumNgram: 2) == [8, 1, 6])
        // Drafts stop at the end of the context; no match, no drafts.
        #expect(NgramDrafter.propose(context: [4, 4], maximumDraft: 5) == [4])
        #expect(NgramDrafter.propose(context: [1, 2, 3, 4], maximumDraft: 5).isEmpty)
        #expect(NgramDrafter.propose(context: [1], maximumDraft: 5).isEmpty)
        #expect(SpeculationOptions(mode: .off).drafts(after: [1, 1, 1], limit: 4).isEmpty)
        #expect(SpeculationOptions(mode: .ngram, draftTokens: 2).drafts(after: [3, 1, 2, 3, 1, 2, 3], limit: 8) == [1, 2])
        #expect(SpeculationOptions(mode: .ngram).drafts(after: [3, 1, 2, 3], limit: 0).isEmpty)
    }

    @Test func rejectedPositionsLeaveTheCache() {
        let cache = KVCache(layerCount: 2, rowWidth: 4)
        cache.reserve(6)
        cache.commit(6)
        cache.truncate(to: 3)
        #expect(cache.length == 3)
        cache.reserve(2)
        cache.commit(2)
        #expect(cache.length == 5)
    }

    /// A prompt that repeats itself, so drafts are found and mostly accepted.
    static let repetitive = [5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7]

    @Test("greedy tokens and every step's logits are those of one-token decoding",
          arguments: ["qwen3-moe-tiny", "glm4-moe-tiny", "deepseek-v3-tiny", "gguf-mixes/qwen3-moe-w256-Q4_K_M.gguf",
                      "gguf-mixes/deepseek-v3-mixed-Q2_K.gguf"])
    func greedyIsUnchanged(fixture: String) async throws {
        let engine = try InferenceEngine.load(directory: Fixtures.path(fixture))
        let prompts = [Self.repetitive, Array(Self.repetitive.reversed()), [11, 12, 11, 12, 11, 12, 11]]
        var accepted = 0
        for prompt in prompts {
            let request = GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 20, stopTokenIDs: [])
            let plainLogits = LogitsLog(), draftedLogits = LogitsLog()
            let plain = try await engine.generate(request, onStepLogits: { plainLogits.append($0) })
            let drafted = try await engine.generate(request, speculation: SpeculationOptions(mode: .ngram, draftTokens: 4),
                                                    onStepLogits: { draftedLogits.append($0) })
            #expect(drafted.tokenIDs == plain.tokenIDs, "\(fixture) \(prompt)")
            // Round-off only: float weights' row kernels (and MLA's per-head products) sum a
            // multi-token step in another order than a one-token step (the Qwen3 GGUF file,
            // integer kernels throughout, is bit for bit in practice).
            let worst = zip(draftedLogits.rows, plainLogits.rows).map { maxAbsDifference($0, $1) }.max() ?? 0
            #expect(draftedLogits.rows.count == plainLogits.rows.count && worst <= 1e-5, "\(fixture) \(prompt): max |Δlogit| \(worst)")
            let statistics = try #require(drafted.speculation)
            #expect(statistics.tokens == plain.tokenIDs.count - 1 && statistics.steps <= statistics.tokens)
            #expect(statistics.accepted <= statistics.drafted)
            accepted += statistics.accepted
            #expect(plain.speculation == nil)
        }
        #expect(accepted > 0, "\(fixture): no draft was ever accepted, the test proves nothing")
    }

    /// A draft is accepted with its probability and otherwise replaced from the rest of the
    /// distribution, so the chosen tokens are distributed as `sample`'s: a fixed-seed χ²
    /// over 40 000 draws (deterministic, so the test cannot flake).
    @Test func samplingKeepsItsDistribution() {
        let logits: [Float] = [2.0, 1.2, 0.4, -0.3, 1.0, -1.5, 0.0, 0.8]
        for parameters in [SamplingParameters(temperature: 1, seed: 7), SamplingParameters(temperature: 0.7, topK: 5, seed: 8),
                           SamplingParameters(temperature: 1.3, topP: 0.8, seed: 9)] {
            var plain = Sampler(parameters), drafted = Sampler(parameters)
            let draws = 40_000
            var plainCounts = [Int](repeating: 0, count: logits.count), draftedCounts = plainCounts
            for i in 0..<draws {
                plainCounts[plain.sample(logits)] += 1
                draftedCounts[drafted.verify(logits, draft: i % logits.count).token] += 1
            }
            // Both against the exact distribution (from the plain sampler's frequencies'
            // support: tokens top-k / top-p never draws stay at zero in both).
            for (index, count) in plainCounts.enumerated() where count == 0 { #expect(draftedCounts[index] == 0) }
            let expected = plainCounts.map { Double($0) / Double(draws) }
            var chi2 = 0.0, cells = 0
            for (index, p) in expected.enumerated() where p > 0 {
                let e = p * Double(draws)
                chi2 += pow(Double(draftedCounts[index]) - e, 2) / e
                cells += 1
            }
            // Two samples of 40 000 from one distribution: χ² of one against the other's
            // frequencies has about 2·(cells − 1) expected; 3× that is far in the tail.
            #expect(chi2 < 6 * Double(cells - 1), "\(parameters): χ² \(chi2) over \(cells) cells")
        }
    }
}

/// Collects the logits rows `generate` hands out (called from one task at a time).
final class LogitsLog: @unchecked Sendable {
    // @unchecked: `generate` calls `onStepLogits` sequentially; the lock guards the reads.
    private let lock = NSLock()
    private var stored: [[Float]] = []
    func append(_ row: [Float]) { lock.withLock { stored.append(row) } }
    var rows: [[Float]] { lock.withLock { stored } }
}
