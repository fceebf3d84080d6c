import JindouModel
import JindouTestSupport
import Testing

/// `--micro-batches`: how a step is split, and that a split step computes what the whole
/// step computes (sequences never straddle micro-batches; each runs every layer itself).
@Suite struct MicroBatchingTests {
    @Test func groupsCoverEverySequenceOnceInOrderWithEvenTokens() {
        let counts = [1, 1, 5, 1, 3, 1, 1, 2]
        let groups = MicroBatching.fixed(2).groups(tokenCounts: counts, remoteExperts: false)
        #expect(groups.count == 2)
        #expect(groups.flatMap { $0 }.sorted() == Array(counts.indices))
        for group in groups { #expect(group == group.sorted()) }
        let loads = groups.map { $0.reduce(0) { $0 + counts[$1] } }
        #expect(abs(loads[0] - loads[1]) <= counts.max()!)
        #expect(loads == [8, 7] || loads == [7, 8])
    }

    @Test func autoSplitsOnlyRemoteExpertsAndLargeEnoughBatches() {
        let many = [Int](repeating: 1, count: MicroBatching.autoMinimumSequences)
        let few = [Int](repeating: 1, count: MicroBatching.autoMinimumSequences - 1)
        #expect(MicroBatching.auto.groups(tokenCounts: many, remoteExperts: true).count == 2)
        #expect(MicroBatching.auto.groups(tokenCounts: many, remoteExperts: false).count == 1)
        #expect(MicroBatching.auto.groups(tokenCounts: few, remoteExperts: true).count == 1)
        #expect(MicroBatching.fixed(1).groups(tokenCounts: many, remoteExperts: true).count == 1)
        #expect(MicroBatching.fixed(2).groups(tokenCounts: [4], remoteExperts: true) == [[0]])
        #expect(MicroBatching("auto") == .auto && MicroBatching("2") == .fixed(2) && MicroBatching("3") == nil)
    }

    @Test(arguments: ["qwen3-moe-tiny", "deepseek-v3-tiny"])
    func aSplitStepEqualsTheWholeStep(fixture: String) async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let prompts = [[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11, 12], [13], [14, 15, 16]]
        func run(_ microBatches: MicroBatching) async throws -> [[[Float]]] {
            let caches = prompts.map { _ in engine.model.makeCache() }
            var steps: [[[Float]]] = []
            // A prefill step of every prompt, then decode steps of one token each.
            steps.append(try await engine.model.forward(
                zip(caches, prompts).map { SequenceStep(cache: $0, tokens: $1, expertsPerToken: $1.count == 1 ? .fixed(2) : .configured, logits: .all) },
                experts: engine.experts, microBatches: microBatches))
            for step in 0..<3 {
                steps.append(try await engine.model.forward(
                    caches.enumerated().map { SequenceStep(cache: $1, tokens: [20 + step * 5 + $0]) },
                    experts: engine.experts, microBatches: microBatches))
            }
            #expect(caches.map(\.length) == prompts.map { $0.count + 3 })
            return steps
        }
        let whole = try await run(.fixed(1))
        let split = try await run(.fixed(2))
        for (a, b) in zip(whole, split) {
            #expect(a.count == b.count)
            for (x, y) in zip(a, b) { #expect(maxAbsDifference(x, y) < 1e-5) }
        }
    }
}
