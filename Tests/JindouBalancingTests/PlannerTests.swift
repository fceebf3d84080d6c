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
