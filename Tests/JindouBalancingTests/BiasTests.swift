import Foundation
import Testing
@testable import JindouBalancing

@Suite("Serving bias simulation")
struct BiasTests {
    @Test("routing with zero bias reproduces the trace exactly")
    func zeroBias() {
        let routing = Fixtures.zipfRouting
        let trace = Fixtures.zipfTrace
        let replay = BiasReplay(trace: trace, routing: routing,
                                settings: BiasSettings(gamma: 0, cap: 0.1, maxRoutingChange: 0), windowSteps: 32)
        #expect(replay.steps == trace.steps)
        #expect(replay.worst == .none)
        let logp = (0..<48).map { routing.logProbabilityOfExpert(layer: $0, epoch: 0) }
        let zero = [[Float]](repeating: [Float](repeating: 0, count: 128), count: 48)
        #expect(routing.route(step: 5, tokens: 64, logProbability: logp, bias: zero) == trace.steps[5])
    }

    @Test("the update rule: −γ when overloaded, +γ when underloaded, |b| ≤ cap")
    func updateRule() {
        var controller = BiasController(settings: BiasSettings(gamma: 0.1, cap: 0.25, maxRoutingChange: 1), layers: 1, experts: 3)
        for _ in 0..<5 { controller.update(load: [[10, 5, 0]]) }
        #expect(controller.bias == [[-0.25, 0, 0.25]])
    }

    @Test("with the bias on, the routing change stays under the limit and balance improves", arguments: [0.05, 0.1])
    func guarded(limit: Double) throws {
        let settings = BiasSettings(gamma: 0.01, cap: 0.1, maxRoutingChange: limit, maxKL: 0.1)
        let config = SimulationConfiguration(workers: [8], extraSlots: [0.25], windowSteps: 32, bias: settings)
        let (results, _) = try BalanceSimulator.run(trace: Fixtures.zipfTrace, configuration: config)
        let none = try #require(results.first { $0.method == "none" })
        let biased = try #require(results.first { $0.method == "bias" })
        #expect(try #require(biased.routingChanged) <= limit)
        #expect(try #require(biased.routingKL) <= 0.1)
        #expect(try #require(biased.routingChanged) > 0)
        #expect(biased.windowMaxOverMean < none.windowMaxOverMean)
    }
}
