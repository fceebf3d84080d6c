import Foundation
@testable import JindouModel
import JindouNumerics
import JindouTestSupport
import Testing
@testable import JindouServing

/// OpenAI's sampling and scoring fields in the scheduler: log-probabilities are the model's
/// (log-softmax of transformers' own logits), penalties and bias change the logits as
/// defined, min-p cuts the distribution, and requests that adjust logits do not speculate.
@Suite("Sampling fields: logprobs, penalties, logit_bias, min_p")
struct SamplingFieldsTests {
    static let fixture = "qwen3-moe-tiny"

    /// Greedy generation with `logprobs: 3`: each step's chosen-token log-probability and top
    /// three equal log-softmax of transformers' logits for that step (golden generated_logits).
    @Test func logprobsAreTransformersLogSoftmax() async throws {
        let engine = try await EngineCache.shared.engine(Self.fixture)
        let (golden, tensors) = try GoldenSet(fixture: Self.fixture, stem: "golden").load()
        let c = try #require(golden.cases.first { !$0.hasImages && $0.maxNewTokens > 2 })
        let scheduler = BatchScheduler(engine: engine)
        let loop = Task { await scheduler.run() }
        defer { loop.cancel(); Task { await scheduler.stop() } }
        var request = GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens, expertsPerToken: c.experts, stopTokenIDs: [])
        request.logprobs = 3
        var entries: [TokenLogprobs] = [], tokens: [Int] = []
        for try await event in try await scheduler.submit(request) {
            if case .logprobs(let e) = event { entries.append(e) }
            if case .token(let t) = event { tokens.append(t) }
        }
        #expect(tokens == c.greedyNewTokens)
        #expect(entries.count == tokens.count && entries.map(\.token) == tokens)
        // generated_logits row i: the logits token i was chosen from.
        let steps = try rows(tensors.tensor("case\(c.index).generated_logits"))
        #expect(steps.count == entries.count)
        for (i, entry) in entries.enumerated() {
            let logits = steps[i].map(Double.init)
            let maximum = logits.max()!
            let normaliser = maximum + log(logits.reduce(0) { $0 + exp($1 - maximum) })
            #expect(abs(Double(entry.logprob) - (logits[entry.token] - normaliser)) <= 1e-4, "step \(i)")
            let order = logits.indices.sorted { logits[$0] > logits[$1] }
            #expect(entry.top.map(\.token) == Array(order.prefix(3)), "step \(i)")
            for (token, logprob) in entry.top { #expect(abs(Double(logprob) - (logits[token] - normaliser)) <= 1e-4) }
            #expect(entry.top.first?.token == entry.token)  // greedy
        }
    }

    @Test func penaltiesAndBiasAdjustLogitsAsDefined() {
        var p = SamplingParameters()
        let logits: [Float] = [2, -1, 0.5, 3, -2]
        #expect(p.adjusted(logits, prompt: [0, 1], output: [3, 3]) == logits)
        #expect(!p.adjustsLogits)
        p.repetitionPenalty = 2  // every token seen in the prompt or output: ÷2 when positive, ×2 when negative
        #expect(p.adjusted(logits, prompt: [0, 1], output: [3, 3]) == [1, -2, 0.5, 1.5, -2])
        p.repetitionPenalty = 1
        p.frequencyPenalty = 0.5
        p.presencePenalty = 0.25  // output tokens only: −(0.5 × count + 0.25)
        #expect(p.adjusted(logits, prompt: [0, 1], output: [3, 3, 2]) == [2, -1, 0.5 - 0.75, 3 - 1.25, -2])
        p = SamplingParameters()
        p.logitBias = [4: 100, 3: -100]
        #expect(p.adjusted(logits, prompt: [], output: []) == [2, -1, 0.5, -97, 98])
        #expect(p.adjustsLogits)
        var request = GenerationRequest(promptTokenIDs: [1], maxNewTokens: 1, sampling: p)
        #expect(!request.speculates)  // the draft verification would not see the bias
        request.sampling = .greedy
        #expect(request.speculates)
    }

    /// min_p keeps the tokens within min_p of the most likely one's probability, after top-p
    /// (transformers' MinPLogitsWarper order).
    @Test func minPCutsTheDistribution() {
        var p = SamplingParameters(temperature: 1)
        p.minP = 0.2
        let logits: [Float] = [log(0.5), log(0.3), log(0.15), log(0.05)]
        let (tokens, probabilities) = Sampler(p).distribution(logits)
        #expect(tokens == [0, 1, 2])  // 0.05 < 0.2 × 0.5
        #expect(abs(probabilities.reduce(0, +) - 1) < 1e-6)
        #expect(abs(probabilities[0] - Float(0.5 / 0.95)) < 1e-5)
    }
}
