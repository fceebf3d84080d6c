import Foundation
import Testing
import JindouNumerics
@testable import JindouRouting

/// A router whose gate is the identity, so `route(hidden:)` sees `hidden` as logits.
func identityRouter(_ configuration: RouterConfiguration, correctionBias: [Float]? = nil) throws -> Router {
    let n = configuration.expertCount
    var values = [Float](repeating: 0, count: n * n)
    for i in 0..<n { values[i * n + i] = 1 }
    return try Router(configuration: configuration, gate: WeightMatrix(rows: n, columns: n, float32: values), correctionBias: correctionBias)
}

func route(_ router: Router, _ logits: [Float], _ k: ExpertsPerToken = .configured) -> [(expert: Int, weight: Float)] {
    logits.withUnsafeBufferPointer { router.route(hidden: $0.baseAddress!, tokens: 1) { _ in k } }.choices(ofToken: 0)
}

@Suite("Router rules (Jindou's extensions beyond transformers)")
struct RouterRuleTests {
    let softmax8 = RouterConfiguration(expertCount: 8, expertsPerToken: 4, scoring: .softmax, normalizeTopK: true)

    @Test func autoKeepsShortestPrefixReachingThreshold() throws {
        let router = try identityRouter(softmax8)
        // Top-4 softmax probabilities are proportional to e^3, e^2, e^1, e^0.
        let logits: [Float] = [3, 2, 1, 0, -5, -5, -5, -5]
        let e = (0..<4).map { exp(Double(3 - $0)) }
        let total = e.reduce(0, +)
        for threshold in [0.5, 0.8, 0.95, 1.0] {
            var cumulative = 0.0
            var expected = 0
            for value in e {
                cumulative += value
                expected += 1
                if cumulative >= threshold * total { break }
            }
            let chosen = route(router, logits, .auto(threshold: threshold))
            #expect(chosen.map(\.expert) == Array(0..<expected), "threshold \(threshold)")
            // Renormalised over the experts kept.
            #expect(abs(chosen.map(\.weight).reduce(0, +) - 1) < 1e-6)
        }
    }

    @Test func fixedKBeyondConfiguredIsHonoured() throws {
        let router = try identityRouter(softmax8)
        let chosen = route(router, [0, 1, 2, 3, 4, 5, 6, 7], .fixed(8))
        #expect(chosen.map(\.expert) == Array(0..<8))
        #expect(abs(chosen.map(\.weight).reduce(0, +) - 1) < 1e-6)
    }

    @Test func expertsComeOutInAscendingIndexOrder() throws {
        let router = try identityRouter(softmax8)
        let chosen = route(router, [0, 9, 1, 8, 2, 7, 3, 6])
        #expect(chosen.map(\.expert) == [1, 3, 5, 7])
    }

    @Test func biasChangesSelectionButNotWeights() throws {
        let config = RouterConfiguration(expertCount: 4, expertsPerToken: 1, scoring: .sigmoid, normalizeTopK: false)
        let bias: [Float] = [0, 0, 0, 10]
        let router = try identityRouter(config, correctionBias: bias)
        let chosen = route(router, [3, 0, 0, 0])
        #expect(chosen.map(\.expert) == [3])
        #expect(abs(chosen[0].weight - sigmoid(0)) < 1e-7)  // raw score, not score + bias
    }

    @Test func servingBiasStacksOnCorrectionBias() throws {
        let config = RouterConfiguration(expertCount: 4, expertsPerToken: 1, scoring: .sigmoid, normalizeTopK: false)
        var router = try identityRouter(config, correctionBias: [0, 0, 0, 10])
        try router.setServingBias([0, 0, 20, 0])
        #expect(route(router, [3, 0, 0, 0]).map(\.expert) == [2])
        #expect(throws: RoutingError.self) { try router.setServingBias([1]) }
    }

    @Test func groupLimitAdmitsExtraGroupsOnlyWhenKNeedsThem() throws {
        // 8 experts in 4 groups of 2; topk_group 1.
        let config = RouterConfiguration(expertCount: 8, expertsPerToken: 2, scoring: .sigmoid, normalizeTopK: true,
                                         groupCount: 4, groupsPerToken: 1, normalizationEpsilon: 1e-20)
        let router = try identityRouter(config)
        let logits: [Float] = [5, 4, 6, -3, 3, 2, 1, 0]  // group scores: 9, 3, 5, 1
        #expect(route(router, logits).map(\.expert) == [0, 1])          // best group only
        #expect(route(router, logits, .fixed(3)).map(\.expert) == [0, 1, 4])  // two groups: ceil(3 / 2)
        #expect(route(router, logits, .fixed(8)).count == 8)
    }

    @Test func validationNamesTheProblem() throws {
        let router = try identityRouter(softmax8)
        #expect(throws: RoutingError.expertsPerTokenOutOfRange(requested: 9, expertCount: 8)) { try router.validate(.fixed(9)) }
        #expect(throws: RoutingError.expertsPerTokenOutOfRange(requested: 0, expertCount: 8)) { try router.validate(.fixed(0)) }
        #expect(throws: RoutingError.autoThresholdOutOfRange(1.5)) { try router.validate(.auto(threshold: 1.5)) }
        try router.validate(.auto(threshold: 0.9))
    }

    @Test func parsesExpertsPerTokenFlags() {
        #expect(ExpertsPerToken(parsing: "4") == .fixed(4))
        #expect(ExpertsPerToken(parsing: "auto") == .auto(threshold: 0.9))
        #expect(ExpertsPerToken(parsing: "auto:0.75") == .auto(threshold: 0.75))
        #expect(ExpertsPerToken(parsing: "auto", defaultThreshold: 0.6) == .auto(threshold: 0.6))
        #expect(ExpertsPerToken(parsing: "0") == nil)
        #expect(ExpertsPerToken(parsing: "auto:2") == nil)
        #expect(ExpertsPerToken(parsing: "many") == nil)
    }

    @Test func balancingBiasMovesAgainstLoadWithinTheCap() {
        var bias: [Float] = [0, 0, 0.04, -0.04]
        // Mean load 4: expert 0 is over, 1 at the mean, 2 and 3 under.
        BalancingBias.update(&bias, load: [10, 4, 1, 1], gamma: 0.02, cap: 0.05)
        #expect(bias == [-0.02, 0, 0.05, -0.02])
        BalancingBias.update(&bias, load: [10, 4, 1, 1], gamma: 0.02, cap: 0.05)
        #expect(bias == [-0.04, 0, 0.05, 0])
        let before = bias
        BalancingBias.update(&bias, load: [10, 4, 1, 1], gamma: 0, cap: 0.05)
        #expect(bias == before)
    }
}
