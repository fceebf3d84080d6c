import Foundation
import JindouModel
import JindouRouting
import JindouTestSupport
import Testing
@testable import JindouServing

/// Continuous batching changes nothing about what a request produces: greedy tokens in a
/// shared batch (with chunked prefill, mixed experts-per-token) equal each request alone.
@Suite("Continuous batching")
struct BatchSchedulerTests {
    let fixture = "glm4-moe-tiny"

    func requests() -> [GenerationRequest] {
        (0..<12).map { i in
            GenerationRequest(promptTokenIDs: (0..<(3 + i * 4)).map { ($0 * 37 + i * 11) % 300 }, maxNewTokens: 5 + i % 4,
                             expertsPerToken: [.configured, .fixed(1), .fixed(4), .auto(threshold: 0.6)][i % 4])
        }
    }

    func collect(_ stream: AsyncThrowingStream<GenerationEvent, Error>) async throws -> [Int] {
        var tokens: [Int] = []
        for try await event in stream { if case .token(let t) = event { tokens.append(t) } }
        return tokens
    }

    @Test func concurrentRequestsEqualEachAlone() async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        var alone: [[Int]] = []
        for r in requests() {
            alone.append(try await engine.generate(GenerationRequest(promptTokenIDs: r.promptTokenIDs, maxNewTokens: r.maxNewTokens,
                                                                     expertsPerToken: r.expertsPerToken, stopTokenIDs: [])).tokenIDs)
        }
        // Small steps force chunked prefill of the longer prompts alongside decodes.
        let scheduler = BatchScheduler(engine: engine, options: .init(maximumStepTokens: 16, maximumSequences: 8))
        let loop = Task { await scheduler.run() }
        defer { loop.cancel(); Task { await scheduler.stop() } }
        let streams = try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
            for (i, r) in requests().enumerated() {
                let stream = try await scheduler.submit(r)
                group.addTask { (i, try await self.collect(stream)) }
            }
            var results = [[Int]](repeating: [], count: requests().count)
            for try await (i, tokens) in group { results[i] = tokens }
            return results
        }
        #expect(streams == alone)
    }

    @Test func admissionWaitsForKVBudgetAndRefusesWhenFull() async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let request = GenerationRequest(promptTokenIDs: [1, 2, 3, 4], maxNewTokens: 4)
        let perRequest = await BatchScheduler(engine: engine).reservation(for: request)
        // Budget for exactly one request at a time: others wait and still finish.
        let scheduler = BatchScheduler(engine: engine, options: .init(kvCacheBudgetBytes: perRequest, maximumQueued: 3))
        let a = try await scheduler.submit(request), b = try await scheduler.submit(request), c = try await scheduler.submit(request)
        await #expect(throws: SchedulerError.busy(queued: 3)) { try await scheduler.submit(request) }
        let loop = Task { await scheduler.run() }
        defer { loop.cancel(); Task { await scheduler.stop() } }
        let results = try await [collect(a), collect(b), collect(c)]
        #expect(results[0] == results[1] && results[1] == results[2] && results[0].count == 4)
        await #expect(throws: SchedulerError.self) {
            try await scheduler.submit(GenerationRequest(promptTokenIDs: [1, 2], maxNewTokens: 100))
        }
    }

    /// One client cannot fill the queue: past `maximumQueuedPerClient` waiting requests its
    /// new ones are refused while other clients' are still queued, and all queued ones finish.
    @Test func perClientQueueLimit() async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        var request = GenerationRequest(promptTokenIDs: [1, 2, 3, 4], maxNewTokens: 4)
        let perRequest = await BatchScheduler(engine: engine).reservation(for: request)
        let scheduler = BatchScheduler(engine: engine, options: .init(kvCacheBudgetBytes: perRequest, maximumQueued: 8,
                                                                      maximumQueuedPerClient: 2))
        request.clientKey = "10.0.0.1"
        var other = request
        other.clientKey = "10.0.0.2"
        let first = try await scheduler.submit(request), second = try await scheduler.submit(request)
        await #expect(throws: SchedulerError.clientBusy(queued: 2)) { try await scheduler.submit(request) }
        let third = try await scheduler.submit(other)
        var anonymous = request
        anonymous.clientKey = nil
        let fourth = try await scheduler.submit(anonymous)
        #expect(SchedulerError.clientBusy(queued: 2).description.contains("--max-queued-per-client"))
        let loop = Task { await scheduler.run() }
        defer { loop.cancel(); Task { await scheduler.stop() } }
        let results = try await [collect(first), collect(second), collect(third), collect(fourth)]
        #expect(results.allSatisfy { $0 == results[0] && $0.count == 4 })
    }

    @Test func aConsumerThatLeavesIsDropped() async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let scheduler = BatchScheduler(engine: engine)
        let loop = Task { await scheduler.run() }
        defer { loop.cancel(); Task { await scheduler.stop() } }
        do {
            let stream = try await scheduler.submit(GenerationRequest(promptTokenIDs: [1, 2, 3], maxNewTokens: 200))
            for try await event in stream { if case .token = event { break } }
        }
        for _ in 0..<50 where await scheduler.runningCount > 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(await scheduler.runningCount == 0)
    }

    @Test func stopStringsNeverLeak() {
        var matcher = StopStringMatcher(["</s>", "STOP"])
        var out = ""
        for piece in ["Hel", "lo <", "/", "s", "> tail"] { out += matcher.feed(piece) }
        #expect(out == "Hello " && matcher.stopped)
        var open = StopStringMatcher(["STOP"])
        var text = ""
        for piece in ["ST", "OR", "E"] { text += open.feed(piece) }
        text += open.flush()
        #expect(text == "STORE" && !open.stopped)
    }
}
