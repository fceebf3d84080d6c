import Foundation
import JindouRouting

// Serving-time bias terms, simulated: DeepSeek-V3's auxiliary-loss-free balancing
// (DeepSeek-V3 technical report, §2.1.2): a per-expert bias b_i added to the routing scores
// for top-k *selection only*; after each window b_i -= γ when expert i's load is above the
// layer mean and b_i += γ when below. Jindou bounds |b_i| ≤ cap and guards the routing
// change the bias causes, shrinking b when the change passes a limit.

/// Flags of the serving bias.
public struct BiasSettings: Sendable, Equatable {
    /// Step γ per window; 0 disables the bias (routing unchanged exactly).
    public var gamma: Float
    /// |b| ≤ cap.
    public var cap: Float
    /// Largest accepted fraction of top-k choices changed (per window, sampled tokens).
    public var maxRoutingChange: Double
    /// Largest accepted KL(unbiased ‖ biased) of a layer's expert-choice distribution.
    public var maxKL: Double
    /// Measure the guard on every n-th token of a window.
    public var sampleEvery: Int
    /// Factor b is multiplied by on each back-off.
    public var backoff: Float

    public init(gamma: Float, cap: Float, maxRoutingChange: Double, maxKL: Double = .infinity, sampleEvery: Int = 4, backoff: Float = 0.5) {
        self.gamma = gamma
        self.cap = cap
        self.maxRoutingChange = maxRoutingChange
        self.maxKL = maxKL
        self.sampleEvery = max(1, sampleEvery)
        self.backoff = backoff
    }
}

/// The per-layer bias vectors and the update rule.
public struct BiasController: Sendable {
    public let settings: BiasSettings
    /// `bias[layer][expert]`.
    public private(set) var bias: [[Float]]

    public init(settings: BiasSettings, layers: Int, experts: Int) {
        self.settings = settings
        bias = [[Float]](repeating: [Float](repeating: 0, count: experts), count: layers)
    }

    /// One update from a window's per-expert token counts (`load[layer][expert]`).
    public mutating func update(load: [[Double]]) {
        for (layer, counts) in load.enumerated() {
            BalancingBias.update(&bias[layer], load: counts, gamma: settings.gamma, cap: settings.cap)
        }
    }

    /// Shrinks every bias by the back-off factor.
    public mutating func backOff() {
        for layer in bias.indices { for e in bias[layer].indices { bias[layer][e] *= settings.backoff } }
    }
}

/// How much a bias changed routing relative to the unbiased choices of the same tokens.
public struct RoutingChange: Sendable, Equatable {
    /// Fraction of top-k choices (token, layer, slot) whose expert is not in the unbiased
    /// top-k: Σ |S \ S'| / (tokens · layers · k).
    public var changedFraction: Double
    /// max over layers of KL(P ‖ P') in nats, where P and P' are the layer's expert-choice
    /// distributions over the sampled tokens, unbiased and biased, with counts smoothed by
    /// +0.5 per expert (so an expert the bias empties keeps a finite term).
    public var maxKL: Double

    public static let none = RoutingChange(changedFraction: 0, maxKL: 0)

    /// Compares two routings of the same tokens (same shape).
    public static func between(unbiased: TraceStep, biased: TraceStep, layers: Int, experts: Int, topK: Int) -> RoutingChange {
        precondition(unbiased.tokens == biased.tokens && unbiased.choices.count == biased.choices.count)
        var changed = 0
        var maxKL = 0.0
        var p = [Double](repeating: 0, count: experts), q = p
        for layer in 0..<layers {
            for e in 0..<experts { p[e] = 0.5; q[e] = 0.5 }
            for t in 0..<unbiased.tokens {
                let base = (layer * unbiased.tokens + t) * topK
                for j in 0..<topK {
                    let a = unbiased.choices[base + j], b = biased.choices[base + j]
                    p[Int(a)] += 1; q[Int(b)] += 1
                    var found = false
                    for i in 0..<topK where unbiased.choices[base + i] == b { found = true; break }
                    if !found { changed += 1 }
                }
            }
            let total = Double(unbiased.tokens * topK) + 0.5 * Double(experts)
            var kl = 0.0
            for e in 0..<experts { kl += p[e] / total * log(p[e] / q[e]) }
            maxKL = max(maxKL, kl)
        }
        let choices = unbiased.tokens * layers * topK
        return RoutingChange(changedFraction: choices > 0 ? Double(changed) / Double(choices) : 0, maxKL: maxKL)
    }
}

/// The serving bias replayed over a synthetic trace: for each window, route with the
/// current bias; if the sampled routing change passes the limits, back off (shrink b) and
/// re-measure; then update b from the window's biased load.
public struct BiasReplay: Sendable {
    /// The trace as routed with the bias (windows after the first; window 0 is unbiased).
    public var steps: [TraceStep]
    /// Accepted routing change per window (sampled tokens).
    public var changes: [RoutingChange]
    public var backoffs: Int

    /// Worst accepted change over the windows.
    public var worst: RoutingChange {
        RoutingChange(changedFraction: changes.map(\.changedFraction).max() ?? 0, maxKL: changes.map(\.maxKL).max() ?? 0)
    }

    public init(trace: RoutingTrace, routing: SyntheticRouting, settings: BiasSettings, windowSteps: Int) {
        var controller = BiasController(settings: settings, layers: routing.layers, experts: routing.experts)
        let h = trace.header
        steps = []
        changes = []
        backoffs = 0
        var tables: (epoch: Int, logp: [[Float]])? = nil
        var window = 0
        while window * windowSteps < trace.steps.count {
            let range = (window * windowSteps)..<min(trace.steps.count, (window + 1) * windowSteps)
            if window > 0 && settings.gamma > 0 {
                // Guard: measure on sampled tokens, back off until within the limits.
                var change = RoutingChange.none
                let unbiasedSamples = range.map { Self.sample(trace.steps[$0], every: settings.sampleEvery, layers: h.layers, topK: h.topK) }
                for attempt in 0..<20 {
                    var sampled: [RoutingChange] = []
                    for s in range {
                        let logp = Self.tables(&tables, routing: routing, step: s)
                        let unbiased = unbiasedSamples[s - range.lowerBound]
                        let biased = routing.route(step: s, tokens: trace.steps[s].tokens, logProbability: logp,
                                                   bias: controller.bias, sample: settings.sampleEvery)
                        sampled.append(RoutingChange.between(unbiased: unbiased, biased: biased, layers: h.layers, experts: h.experts, topK: h.topK))
                    }
                    change = RoutingChange(changedFraction: sampled.map(\.changedFraction).reduce(0, +) / Double(max(1, sampled.count)),
                                           maxKL: sampled.map(\.maxKL).max() ?? 0)
                    if change.changedFraction <= settings.maxRoutingChange && change.maxKL <= settings.maxKL { break }
                    if attempt == 19 {
                        // 2^-19 of the bias still changes too much: serve this window unbiased.
                        controller = BiasController(settings: settings, layers: h.layers, experts: h.experts)
                        change = .none
                        break
                    }
                    controller.backOff()
                    backoffs += 1
                }
                changes.append(change)
            }
            var routed: [TraceStep] = []
            for s in range {
                if window == 0 || settings.gamma == 0 {
                    routed.append(trace.steps[s])
                } else {
                    let logp = Self.tables(&tables, routing: routing, step: s)
                    routed.append(routing.route(step: s, tokens: trace.steps[s].tokens, logProbability: logp, bias: controller.bias))
                }
            }
            controller.update(load: RoutingTrace(header: h, steps: routed).expertLoad())
            steps += routed
            window += 1
        }
    }

    /// Every n-th token of a step (tokens 0, n, 2n, …), as `SyntheticRouting.route(sample:)` routes them.
    static func sample(_ step: TraceStep, every n: Int, layers: Int, topK: Int) -> TraceStep {
        guard n > 1 else { return step }
        let routed = (step.tokens + n - 1) / n
        var choices: [UInt16] = []
        choices.reserveCapacity(layers * routed * topK)
        for layer in 0..<layers {
            for slot in 0..<routed {
                let base = (layer * step.tokens + slot * n) * topK
                choices += step.choices[base..<(base + topK)]
            }
        }
        return TraceStep(tokens: routed, choices: choices)
    }

    private static func tables(_ cache: inout (epoch: Int, logp: [[Float]])?, routing: SyntheticRouting, step: Int) -> [[Float]] {
        let epoch = routing.epoch(ofStep: step)
        if let cache, cache.epoch == epoch { return cache.logp }
        let logp = (0..<routing.layers).map { routing.logProbabilityOfExpert(layer: $0, epoch: epoch) }
        cache = (epoch, logp)
        return logp
    }
}
