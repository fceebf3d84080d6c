import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting

@Suite("Generation: sampling, stopping, bad requests")
struct GenerationTests {
    let fixture = "qwen3-moe-tiny"
    let prompt = [3, 14, 15, 92, 65]

    @Test func stopsAtAStopTokenAndIncludesIt() async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let free = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 8, stopTokenIDs: []))
        #expect(free.finishReason == .length && free.tokenIDs.count == 8)
        let stopAt = free.tokenIDs[3]
        let firstIndex = free.tokenIDs.firstIndex(of: stopAt)!
        let stopped = try await engine.generate(
            GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 8, stopTokenIDs: [stopAt]))
        #expect(stopped.finishReason == .stop)
        #expect(stopped.tokenIDs == Array(free.tokenIDs[...firstIndex]))
    }

    @Test func seededSamplingIsReproducibleAndTopKOneIsGreedy() async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let sampling = SamplingParameters(temperature: 1.5, topK: 50, topP: 0.95, seed: 42)
        let a = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 12, sampling: sampling, stopTokenIDs: []))
        let b = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 12, sampling: sampling, stopTokenIDs: []))
        #expect(a.tokenIDs == b.tokenIDs)
        let greedy = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 12, stopTokenIDs: []))
        let topOne = try await engine.generate(GenerationRequest(
            promptTokenIDs: prompt, maxNewTokens: 12, sampling: SamplingParameters(temperature: 2, topK: 1, seed: 7), stopTokenIDs: []))
        #expect(topOne.tokenIDs == greedy.tokenIDs)
    }

    @Test func samplerRespectsTopKAndTopP() {
        let logits: [Float] = [0, 5, 4.9, -1, 3]
        var counts = [Int](repeating: 0, count: 5)
        var sampler = Sampler(SamplingParameters(temperature: 1, topK: 2, seed: 1))
        for _ in 0..<2000 { counts[sampler.sample(logits)] += 1 }
        #expect(counts[0] == 0 && counts[3] == 0 && counts[4] == 0)
        #expect(counts[1] > 0 && counts[2] > 0)
        var nucleus = Sampler(SamplingParameters(temperature: 1, topP: 0.01, seed: 1))
        for _ in 0..<100 { #expect(nucleus.sample(logits) == 1) }
    }

    @Test func badRequestsAreRefusedWithTheReason() async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let vocabulary = engine.description.vocabularySize
        await #expect(throws: EngineError.tokenOutOfRange(token: vocabulary, vocabularySize: vocabulary)) {
            try await engine.generate(GenerationRequest(promptTokenIDs: [1, vocabulary], maxNewTokens: 1))
        }
        await #expect(throws: EngineError.emptyPrompt) {
            try await engine.generate(GenerationRequest(promptTokenIDs: [], maxNewTokens: 1))
        }
        await #expect(throws: EngineError.self) {
            try await engine.generate(GenerationRequest(promptTokenIDs: [1], maxNewTokens: 1, expertsPerToken: .fixed(99)))
        }
        await #expect(throws: EngineError.self) {
            try await engine.generate(GenerationRequest(
                promptTokenIDs: [1], maxNewTokens: 1, sampling: SamplingParameters(temperature: -1)))
        }
        // The engine is still fine afterwards.
        let ok = try await engine.generate(GenerationRequest(promptTokenIDs: [1, 2], maxNewTokens: 2))
        #expect(ok.tokenIDs.count == 2)
    }

    @Test func batchedSequencesEqualSeparateOnes() async throws {
        // Two sequences in one step (as continuous batching will run them) give the same
        // logits as each alone: attention never crosses sequences.
        let engine = try await EngineCache.shared.engine(fixture)
        let other = [7, 8, 9]
        let aloneA = try await engine.promptLogits(prompt)
        let aloneB = try await engine.promptLogits(other, expertsPerToken: .fixed(4))
        let together = try await engine.model.forward([
            SequenceStep(cache: engine.model.makeCache(), tokens: prompt, logits: .all),
            SequenceStep(cache: engine.model.makeCache(), tokens: other, expertsPerToken: .fixed(4), logits: .all),
        ], experts: engine.experts)
        #expect(maxAbsDifference(together[0], aloneA.flatMap { $0 }) < 1e-5)
        #expect(maxAbsDifference(together[1], aloneB.flatMap { $0 }) < 1e-5)
    }

    @Test func kvCacheReportsItsSize() async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let cache = engine.model.makeCache()
        _ = try await engine.model.forward([SequenceStep(cache: cache, tokens: prompt)], experts: engine.experts)
        let a = engine.description.attention
        #expect(cache.length == prompt.count)
        #expect(cache.bytesPerToken == engine.description.layerCount * 2 * a.keyValueHeads * a.headDimension * 4)
    }
}
