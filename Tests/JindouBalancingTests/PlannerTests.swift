import Foundation
import JindouModel
import JindouPlacement
import Testing
@testable import JindouBalancing

@Suite("EPLB-style replication planner")
struct PlannerTests {
    static let window = 32

    @Test("every expert hosted, slot counts respected, no two copies of one expert on a worker", arguments: [4, 8, 16], [0.0, 0.125, 0.25])
    func layoutInvariants(workers: Int, extra: Double) throws {
        let trace = Fixtures.zipfTrace
        let planner = ReplicationPlanner(workers: workers, extraSlotFraction: extra)
        let plan = try planner.plan(load: trace.expertLoad(steps: 0..<Self.window), steps: Self.window)
        let perWorker = try planner.slotsPerWorker(experts: 128)
        #expect(perWorker * workers == Int((128 * (1 + extra)).rounded(.up)))
        for layer in 0..<48 {
            let hosts = plan.layout.hosts[layer]
            #expect(hosts.allSatisfy { !$0.isEmpty && Set($0).count == $0.count })
            #expect(plan.layout.slotsUsed(layer: layer).allSatisfy { $0 <= perWorker })
            #expect(hosts.reduce(0) { $0 + $1.count } == perWorker * workers)
        }
    }

    @Test("a memory cap lowers slots per worker, and too small a cap is an error")
    func memoryCap() throws {
        let load = Fixtures.zipfTrace.expertLoad(steps: 0..<Self.window)
        let plan = try ReplicationPlanner(workers: 8, extraSlotFraction: 0.25, memoryCapExperts: 17).plan(load: load, steps: Self.window)
        #expect((0..<48).allSatisfy { plan.layout.slotsUsed(layer: $0).max()! <= 17 })
        #expect(throws: PlacementError.self) {
            try ReplicationPlanner(workers: 8, extraSlotFraction: 0.25, memoryCapExperts: 15).plan(load: load, steps: Self.window)
        }
    }

    @Test("replicate_experts gives the next copy to the highest load per copy")
    func replicate() {
        // Load per copy after each extra slot, as EPLB's loop computes it.
        let load = [90.0, 30, 20, 10]
        let copies = ReplicationPlanner.replicate(load: load, slots: 7)
        #expect(copies.reduce(0, +) == 7)
        let perCopy = zip(load, copies).map { $0 / Double($1) }
        // No expert could give a copy to another and lower the maximum.
        for (e, c) in copies.enumerated() where c > 1 {
            #expect(load[e] / Double(c - 1) >= perCopy.max()!)
        }
    }

    @Test("copies split an expert's tokens evenly and conserve them")
    func tokenSplit() {
        let step = TraceStep(tokens: 5, choices: [0, 1, 0, 1, 0, 2, 0, 1, 0, 3])  // expert 0 five times
        let layout = ReplicaLayout(workers: 3, hosts: [[[0, 1], [2], [2], [2]]])
        var acc = BalanceAccumulator(workers: 3)
        acc.add(steps: [step][...], layout: layout, experts: 4, topK: 2)
        // Worker 0 gets 3 (or 2) of expert 0's 5 tokens, worker 1 the rest, worker 2 five.
        #expect(acc.stepMaxOverMean == 5.0 / (10.0 / 3.0))
        #expect(acc.meanActivated == 5.0 / 3.0)
        #expect(acc.meanMaxActivated == 3)
    }

    @Test("replication at +25 % slots reaches max/mean ≤ 1.10 on Zipf 1.2", arguments: [4, 8, 16])
    func balanceBar(workers: Int) throws {
        let config = SimulationConfiguration(workers: [workers], extraSlots: [0.25], windowSteps: Self.window)
        let (results, _) = try BalanceSimulator.run(trace: Fixtures.zipfTrace, configuration: config)
        let none = try #require(results.first { $0.method == "none" })
        let replicated = try #require(results.first { $0.method == "replication" })
        #expect(replicated.windowMaxOverMean <= 1.10)
        #expect(replicated.windowMaxOverMean < none.windowMaxOverMean)
        // The activated-experts variant reads fewer distinct experts per worker.
        let activated = try #require(results.first { $0.method == "replication-activated" })
        #expect(activated.meanMaxActivated < replicated.meanMaxActivated)
    }

    /// A step waits for its busiest worker: choosing each step's copies by that step's load
    /// evens the step, not only the window (the placement is EPLB's either way).
    @Test("choosing copies by each step's load brings step max/mean to ≤ 1.10 on Zipf 1.2", arguments: [4, 8, 16])
    func stepChoiceBar(workers: Int) throws {
        let config = SimulationConfiguration(workers: [workers], extraSlots: [0.25], windowSteps: Self.window)
        let (results, _) = try BalanceSimulator.run(trace: Fixtures.zipfTrace, configuration: config)
        let rotated = try #require(results.first { $0.method == "replication" })
        let chosen = try #require(results.first { $0.method == "replication+step-choice" })
        #expect(chosen.stepMaxOverMean <= 1.10, "\(workers) workers: step max/mean \(chosen.stepMaxOverMean)")
        #expect(chosen.stepMaxOverMean < rotated.stepMaxOverMean || rotated.stepMaxOverMean <= 1.01)
    }

    /// The split's busiest worker is never busier than the best split's by more than one
    /// token: random small cases against every assignment.
    @Test("the least-loaded split is near the min-max optimum")
    func leastLoadedSplitIsNearOptimal() {
        var state: UInt64 = 12_345
        func next(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        for _ in 0..<300 {
            let workers = 2 + next(3), experts = 2 + next(4)
            let hosts = (0..<experts).map { _ -> [Int] in
                let copies = 1 + next(2)
                var chosen: [Int] = []
                while chosen.count < copies { let w = next(workers); if !chosen.contains(w) { chosen.append(w) } }
                return chosen
            }
            let counts = (0..<experts).map { _ in next(5) }
            var tokens = [Int](repeating: 0, count: workers)
            let given = ReplicaChoice.split(counts: counts, hosts: hosts, tokens: &tokens)
            // Conserved: every token placed on one of its expert's copies.
            for e in 0..<experts where !given[e].isEmpty { #expect(given[e].reduce(0, +) == counts[e]) }
            #expect(tokens.reduce(0, +) == counts.reduce(0, +))
            // Brute force: every split of every replicated expert's tokens.
            func best(_ e: Int, _ load: [Int]) -> Int {
                if e == experts { return load.max()! }
                var result = Int.max
                if hosts[e].count == 1 {
                    var l = load
                    l[hosts[e][0]] += counts[e]
                    return best(e + 1, l)
                }
                for first in 0...counts[e] {
                    var l = load
                    l[hosts[e][0]] += first
                    l[hosts[e][1]] += counts[e] - first
                    result = min(result, best(e + 1, l))
                }
                return result
            }
            let optimum = best(0, [Int](repeating: 0, count: workers))
            #expect(tokens.max()! <= optimum + 1, "hosts \(hosts), counts \(counts): \(tokens.max()!) vs optimum \(optimum)")
        }
    }

    @Test("a plan written as a placement file loads as the same Placement, primaries kept")
    func placementFile() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/qwen3-moe-tiny/config.json")
        let description = try ModelDescription(configJSON: try Data(contentsOf: fixture), path: fixture.path)
        let layers = description.sparseLayers  // 3 of 4 layers; layer 1 is dense
        let routing = SyntheticRouting(experts: description.expertCount, layers: layers.count, topK: 2,
                                       parameters: SyntheticTraceParameters(seed: 3, zipf: 1.2, tokensPerStep: 16, shiftEvery: 0))
        let trace = routing.generate(tokens: 256)
        let plan = try ReplicationPlanner(workers: 3, extraSlotFraction: 0.25).plan(load: trace.expertLoad(), steps: trace.steps.count)
        let names = ["a", "b", "c"]
        let file = try plan.layout.placementFile(workerNames: names, modelLayers: layers, version: 9)
        let path = Fixtures.scratchPath("placement.json")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try JSONEncoder().encode(file).write(to: URL(fileURLWithPath: path))
        let loaded = try PlacementFile.load(path: path, description: description)
        let direct = try plan.layout.placement(workerNames: names, modelLayers: layers, version: 9)
        #expect(loaded == direct)
        #expect(plan.copies.joined().contains { $0 > 1 })
    }

    @Test("a plan converts to a Placement and back")
    func placementConversion() throws {
        let plan = try ReplicationPlanner(workers: 4, extraSlotFraction: 0.25)
            .plan(load: Fixtures.zipfTrace.expertLoad(steps: 0..<Self.window), steps: Self.window)
        let names = (0..<4).map { "w\($0)" }
        let modelLayers = (0..<48).map { $0 + 1 }  // e.g. layer 0 dense
        let placement = try plan.layout.placement(workerNames: names, modelLayers: modelLayers, version: 3)
        #expect(placement.version == 3)
        #expect(placement.hostsOf(ExpertKey(layer: 1, expert: 5)) == plan.layout.hosts[0][5])
        #expect(try ReplicaLayout(placement: placement, modelLayers: modelLayers, experts: 128) == plan.layout)
        let contiguous = ReplicaLayout.contiguous(experts: 128, layers: 48, workers: 4)
        #expect(contiguous.hosts[0][31] == [0] && contiguous.hosts[0][32] == [1])
    }
}
