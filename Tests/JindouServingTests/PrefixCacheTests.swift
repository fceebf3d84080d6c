import Foundation
import JindouModel
import JindouRouting
import JindouTestSupport
import Testing
@testable import JindouServing

/// Prefix caching changes nothing a request produces: a prompt that starts with a finished
/// request's tokens prefills only the rest and gives the same greedy tokens as the engine
/// alone — for GQA, MLA (latent rows), DSA (indexer keys) and sliding-window layers, keyed
/// by experts-per-token.
@Suite("Prefix caching")
struct PrefixCacheTests {
    static let fixtures = ["qwen3-moe-tiny", "deepseek-v3-tiny", "gpt-oss-tiny", "glm-moe-dsa-tiny"]

    func run(_ scheduler: BatchScheduler, _ request: GenerationRequest) async throws -> (tokens: [Int], cached: Int) {
        var tokens: [Int] = [], cached = 0
        for try await event in try await scheduler.submit(request) {
            if case .token(let t) = event { tokens.append(t) }
            if case .cachedPrompt(let n) = event { cached = n }
        }
        return (tokens, cached)
    }

    @Test("Repeated and shared prefixes are reused and the tokens equal the engine's", arguments: fixtures)
    func reusedPrefixesGiveTheSameTokens(fixture: String) async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let vocabulary = engine.description.vocabularySize
        let long = (0..<70).map { ($0 * 37 + 5) % vocabulary }
        let sharing = Array(long.prefix(40)) + (0..<9).map { ($0 * 53 + 7) % vocabulary }
        func alone(_ prompt: [Int], _ k: ExpertsPerToken = .configured) async throws -> [Int] {
            try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 6, expertsPerToken: k, stopTokenIDs: [])).tokenIDs
        }
        func request(_ prompt: [Int], _ k: ExpertsPerToken = .configured) -> GenerationRequest {
            GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 6, expertsPerToken: k, stopTokenIDs: [])
        }
        // Sliding-window layers reuse a prefix only while the entry still holds its window
        // (gpt-oss-tiny's windows are a few positions, so its entries rarely can): there
        // only the tokens are checked.
        let slides = engine.model.makeCache().windows.contains { $0 != nil }
        let scheduler = BatchScheduler(engine: engine, options: .init(maximumStepTokens: 32))
        let loop = Task { await scheduler.run() }
        defer { loop.cancel(); Task { await scheduler.stop() } }

        let first = try await run(scheduler, request(long))
        #expect(first.cached == 0)
        #expect(first.tokens == (try await alone(long)))
        // The same prompt again: all but the last partial block and one token come from the cache.
        let second = try await run(scheduler, request(long))
        #expect(slides || second.cached == 64)
        #expect(second.tokens == first.tokens)
        // A prompt sharing 40 tokens reuses the two whole blocks inside them.
        let shared = try await run(scheduler, request(sharing))
        #expect(slides || shared.cached == 32)
        #expect(shared.tokens == (try await alone(sharing)))
        // Elastic K changes the hidden states: no reuse across experts-per-token.
        let fewer = try await run(scheduler, request(long, .fixed(1)))
        #expect(fewer.cached == 0)
        #expect(fewer.tokens == (try await alone(long, .fixed(1))))
        // A whole earlier answer extends the prefix: prompt + generated tokens are cached.
        let continued = try await run(scheduler, request(long + first.tokens + [3, 4, 5]))
        #expect(slides || continued.cached == 64)
        #expect(continued.tokens == (try await alone(long + first.tokens + [3, 4, 5])))
    }

    /// A recurrent state stands for its whole sequence: a prompt that extends a kept sequence
    /// (a chat's next turn) starts from its rows and state; one that shares only part of it
    /// prefills everything. Outputs equal the engine's either way.
    @Test("Linear-attention models reuse a whole kept sequence, state and rows", arguments: ["qwen3-next-tiny", "kimi-linear-tiny"])
    func recurrentStatesAreReusedWhole(fixture: String) async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let vocabulary = engine.description.vocabularySize
        let long = (0..<40).map { ($0 * 37 + 5) % vocabulary }
        func request(_ prompt: [Int]) -> GenerationRequest {
            GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 6, stopTokenIDs: [])
        }
        func alone(_ prompt: [Int]) async throws -> [Int] { try await engine.generate(request(prompt)).tokenIDs }
        let scheduler = BatchScheduler(engine: engine, options: .init(maximumStepTokens: 16))
        let loop = Task { await scheduler.run() }
        defer { loop.cancel(); Task { await scheduler.stop() } }
        let first = try await run(scheduler, request(long))
        let expectedFirst = try await alone(long)
        #expect(first.cached == 0 && first.tokens == expectedFirst)
        // The next turn: the prompt, the answer (all but the last token were fed) and more.
        let turn = long + first.tokens + [3, 4, 5]
        let next = try await run(scheduler, request(turn))
        #expect(next.cached == long.count + first.tokens.count - 1)
        #expect(next.tokens == (try await alone(turn)))
        // Only part of a kept sequence: no reuse, the same tokens.
        let part = Array(long.prefix(30)) + [7, 8, 9]
        let partial = try await run(scheduler, request(part))
        let expectedPart = try await alone(part)
        #expect(partial.cached == 0 && partial.tokens == expectedPart)
    }

    @Test("Running requests share a kept prefix's pages: two fit a budget that holds one and a half copies, and give the engine's tokens")
    func runningRequestsShareOnePrefix() async throws {
        let engine = try await EngineCache.shared.engine("qwen3-moe-tiny")
        let vocabulary = engine.description.vocabularySize
        let system = (0..<192).map { ($0 * 37 + 5) % vocabulary }
        func request(_ tail: [Int], _ n: Int = 48) -> GenerationRequest {
            GenerationRequest(promptTokenIDs: system + tail, maxNewTokens: n, stopTokenIDs: [])
        }
        let full = await BatchScheduler(engine: engine).reservation(for: request([1, 2, 3]))
        let scheduler = BatchScheduler(engine: engine, options: .init(maximumStepTokens: 64, kvCacheBudgetBytes: full * 3 / 2))
        let loop = Task { await scheduler.run() }
        defer { loop.cancel(); Task { await scheduler.stop() } }
        _ = try await run(scheduler, request([9], 1))
        // Both submitted before the loop admits either: copies would run them one after the other.
        let streams = [try await scheduler.submit(request([1, 2, 3])), try await scheduler.submit(request([4, 5, 6]))]
        var tokens: [[Int]] = [[], []], cached = [0, 0], sawBothRunning = false
        var iterators = streams.map { $0.makeAsyncIterator() }
        while true {
            var progressed = false
            for i in 0..<2 {
                guard let event = try await iterators[i].next() else { continue }
                progressed = true
                if case .token(let t) = event { tokens[i].append(t) }
                if case .cachedPrompt(let n) = event { cached[i] = n }
            }
            let usage = await scheduler.prefixCacheUsage
            if usage.running == 2 && usage.sharedByRunning > 0 { sawBothRunning = true }
            if !progressed { break }
        }
        #expect(sawBothRunning)
        #expect(cached == [192, 192])
        #expect(tokens[0] == (try await engine.generate(request([1, 2, 3])).tokenIDs))
        #expect(tokens[1] == (try await engine.generate(request([4, 5, 6])).tokenIDs))
    }

    @Test("Kept prefixes give way to running requests and are off when disabled")
    func evictionAndSwitch() async throws {
        let engine = try await EngineCache.shared.engine("qwen3-moe-tiny")
        let prompt = (0..<50).map { $0 % 200 }
        let request = GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 4, stopTokenIDs: [])
        let perRequest = await BatchScheduler(engine: engine).reservation(for: request)
        // A budget of one request: the kept cache must be evicted to admit another prompt.
        let tight = BatchScheduler(engine: engine, options: .init(kvCacheBudgetBytes: perRequest))
        let loop = Task { await tight.run() }
        let other = GenerationRequest(promptTokenIDs: prompt.map { ($0 + 7) % 200 }, maxNewTokens: 4, stopTokenIDs: [])
        _ = try await run(tight, request)
        let b = try await run(tight, other)
        #expect(b.cached == 0)
        #expect(b.tokens == (try await engine.generate(other).tokenIDs))
        #expect(await tight.prefixCacheUsage.bytes <= perRequest)
        loop.cancel()
        await tight.stop()
        let off = BatchScheduler(engine: engine, options: .init(prefixCaching: false))
        let offLoop = Task { await off.run() }
        defer { offLoop.cancel(); Task { await off.stop() } }
        _ = try await run(off, request)
        #expect(try await run(off, request).cached == 0)
    }
}
