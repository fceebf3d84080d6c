import Foundation
import JindouRouting
import Synchronization

/// `--balance-bias`: DeepSeek-V3's auxiliary-loss-free rule applied at serving time.
public struct ServingBiasSettings: Sendable, Equatable {
    /// Step per update (`--bias-gamma`).
    public var gamma: Float
    /// Bound on |b| (`--bias-cap`).
    public var cap: Float
    /// Largest fraction of top-k choices the bias may change on sampled tokens (`--max-routing-change`).
    public var maxRoutingChange: Double
    /// Largest mean KL(unbiased ‖ biased) of the routing weights on sampled tokens (`--max-routing-kl`); nil: not limited.
    public var maxDivergence: Double?
    /// Router logits kept per layer to measure the change a bias causes.
    public var samplesPerLayer: Int

    public init(gamma: Float = 0.001, cap: Float = 0.05, maxRoutingChange: Double = 0.05, maxDivergence: Double? = nil,
                samplesPerLayer: Int = 64) {
        self.maxDivergence = maxDivergence
        self.gamma = gamma
        self.cap = cap
        self.maxRoutingChange = maxRoutingChange
        self.samplesPerLayer = samplesPerLayer
    }
}

/// The serving-time balancing bias of every sparse layer, shared by the dispatch path
/// (which routes with it and samples router logits) and the controller (which updates it
/// once per second from the windowed expert load, guarded by the routing change it causes).
///
/// The bias is added to the selection scores after the checkpoint's own
/// `e_score_correction_bias` (`Router.setServingBias`); it never changes routing weights.
public final class ServingBias: Sendable {
    /// How far the bias moves routing, measured on sampled tokens (unbiased vs biased top-k).
    public struct Change: Sendable, Equatable {
        /// Top-k choices compared and how many differ.
        public var choices = 0
        public var changed = 0
        /// Σ over tokens of KL(unbiased ‖ biased) of the routing weights.
        public var divergence = 0.0
        public var tokens = 0

        public var fraction: Double { choices == 0 ? 0 : Double(changed) / Double(choices) }
        public var meanDivergence: Double { tokens == 0 ? 0 : divergence / Double(tokens) }

        mutating func add(_ other: Change) {
            choices += other.choices
            changed += other.changed
            divergence += other.divergence
            tokens += other.tokens
        }
    }

    /// Per layer: the bias, the change it causes on the samples (guard), back-offs.
    public struct LayerState: Sendable {
        public var bias: [Float]
        public var guarded = Change()
        public var observed = Change()
        public var backoffs = 0
        public var maxAbs: Float { bias.reduce(0) { max($0, abs($1)) } }
    }

    private struct Samples {
        /// `samplesPerLayer × expertCount` router logits (a ring).
        var logits: [Float]
        var count = 0
        var next = 0
    }

    private struct State {
        var layers: [Int: LayerState] = [:]
        var samples: [Int: Samples] = [:]
        var updates = 0
    }

    public let settings: ServingBiasSettings
    public let expertCount: Int
    /// The coordinator's routers (checkpoint gate and correction bias), by layer.
    let routers: [Int: Router]
    private let state: Mutex<State>
    private let sampleCounter = Atomic<Int>(0)

    public init(settings: ServingBiasSettings, routers: [Int: Router]) {
        self.settings = settings
        self.routers = routers
        expertCount = routers.values.first?.configuration.expertCount ?? 0
        var initial = State()
        for layer in routers.keys {
            initial.layers[layer] = LayerState(bias: [Float](repeating: 0, count: expertCount))
            initial.samples[layer] = Samples(logits: [Float](repeating: 0, count: settings.samplesPerLayer * expertCount))
        }
        state = Mutex(initial)
    }

    // MARK: - Dispatch path

    /// Routes with the layer's serving bias, keeps one token's router logits as a sample,
    /// and measures on it the change the bias makes. Without a bias (all zero) this is
    /// exactly `router.route`.
    func route(layer: Int, router: Router, hidden: UnsafePointer<Float>, tokens: Int,
               expertsPerToken: (Int) -> ExpertsPerToken) -> RoutingDecision {
        let n = expertCount
        let logits = router.logits(hidden: hidden, tokens: tokens)
        let sampled = tokens > 0 ? sampleCounter.wrappingAdd(1, ordering: .relaxed).oldValue % tokens : 0
        let bias: [Float]? = state.withLock { s in
            if tokens > 0, var ring = s.samples.removeValue(forKey: layer) {
                let row = ring.next * n
                logits.withUnsafeBufferPointer { l in
                    ring.logits.withUnsafeMutableBufferPointer { r in
                        for e in 0..<n { r[row + e] = l[sampled * n + e] }
                    }
                }
                ring.next = (ring.next + 1) % settings.samplesPerLayer
                ring.count = min(ring.count + 1, settings.samplesPerLayer)
                s.samples[layer] = ring
            }
            guard let current = s.layers[layer], current.bias.contains(where: { $0 != 0 }) else { return nil }
            return current.bias
        }
        guard let bias else {
            return logits.withUnsafeBufferPointer { router.select(logits: $0.baseAddress!, tokens: tokens, expertsPerToken: expertsPerToken) }
        }
        var biased = router
        try? biased.setServingBias(bias)
        let decision = logits.withUnsafeBufferPointer {
            biased.select(logits: $0.baseAddress!, tokens: tokens, expertsPerToken: expertsPerToken)
        }
        if tokens > 0 {
            let unbiased = logits.withUnsafeBufferPointer {
                router.select(logits: $0.baseAddress! + sampled * n, tokens: 1) { _ in expertsPerToken(sampled) }
            }
            let range = decision.offsets[sampled]..<decision.offsets[sampled + 1]
            let change = Self.compare(unbiased: (unbiased.experts, unbiased.weights),
                                      biased: (Array(decision.experts[range]), Array(decision.weights[range])))
            state.withLock { $0.layers[layer]?.observed.add(change) }
        }
        return decision
    }

    /// Changed top-k choices and KL(unbiased ‖ biased) for one token. Weights are
    /// normalised to distributions over experts; an expert the biased routing dropped
    /// counts with probability 1e-6 there, so the divergence is large but finite.
    static func compare(unbiased: ([Int32], [Float]), biased: ([Int32], [Float])) -> Change {
        let p = unbiased.1.reduce(0, +), q = biased.1.reduce(0, +)
        var change = Change(choices: unbiased.0.count, tokens: 1)
        for (i, e) in unbiased.0.enumerated() {
            let pe = Double(unbiased.1[i] / max(p, .leastNormalMagnitude))
            if let j = biased.0.firstIndex(of: e) {
                let qe = Double(biased.1[j] / max(q, .leastNormalMagnitude))
                if pe > 0 { change.divergence += pe * log(pe / max(qe, 1e-6)) }
            } else {
                change.changed += 1
                if pe > 0 { change.divergence += pe * log(pe / 1e-6) }
            }
        }
        return change
    }

    // MARK: - Controller

    /// The change `bias` would make on `layer`'s sampled tokens (configured K).
    func evaluate(layer: Int, bias: [Float]) -> Change {
        guard let router = routers[layer] else { return Change() }
        let (logits, count) = state.withLock { s in (s.samples[layer]?.logits ?? [], s.samples[layer]?.count ?? 0) }
        guard count > 0 else { return Change() }
        var biased = router
        try? biased.setServingBias(bias)
        let (a, b) = logits.withUnsafeBufferPointer { l in
            (router.select(logits: l.baseAddress!, tokens: count) { _ in .configured },
             biased.select(logits: l.baseAddress!, tokens: count) { _ in .configured })
        }
        var change = Change()
        for t in 0..<count {
            let ra = a.offsets[t]..<a.offsets[t + 1], rb = b.offsets[t]..<b.offsets[t + 1]
            change.add(Self.compare(unbiased: (Array(a.experts[ra]), Array(a.weights[ra])),
                                    biased: (Array(b.experts[rb]), Array(b.weights[rb]))))
        }
        return change
    }

    /// One update from the window's per-expert load (layer → assignments per expert):
    /// b_i −= γ above the layer mean, += γ below, |b| ≤ cap; then, while the change on the
    /// sampled tokens exceeds `maxRoutingChange` (or the KL exceeds `maxDivergence`), the
    /// bias is halved (a back-off).
    /// Returns whether any bias changed.
    @discardableResult
    public func update(load: [Int: [Int]]) -> Bool {
        var changedAny = false
        for layer in routers.keys.sorted() {
            guard let row = load[layer], row.count == expertCount else { continue }
            let total = row.reduce(0, +)
            guard total > 0 else { continue }
            var bias = state.withLock { $0.layers[layer]?.bias } ?? [Float](repeating: 0, count: expertCount)
            let before = bias
            BalancingBias.update(&bias, load: row.map(Double.init), gamma: settings.gamma, cap: settings.cap)
            var change = evaluate(layer: layer, bias: bias)
            var backoffs = 0
            while change.fraction > settings.maxRoutingChange || settings.maxDivergence.map({ change.meanDivergence > $0 }) == true {
                backoffs += 1
                for e in 0..<expertCount { bias[e] *= 0.5 }
                if bias.allSatisfy({ abs($0) < 1e-9 }) { bias = [Float](repeating: 0, count: expertCount) }
                change = evaluate(layer: layer, bias: bias)
            }
            if bias != before { changedAny = true }
            state.withLock { s in
                s.layers[layer]?.bias = bias
                s.layers[layer]?.guarded = change
                s.layers[layer]?.backoffs += backoffs
            }
        }
        state.withLock { $0.updates += 1 }
        return changedAny
    }

    /// Sets restored biases (layer → bias); others stay zero.
    public func restore(_ biases: [Int: [Float]]) {
        state.withLock { s in
            for (layer, bias) in biases where bias.count == expertCount && s.layers[layer] != nil {
                s.layers[layer]!.bias = bias.map { min(settings.cap, max(-settings.cap, $0)) }
            }
        }
    }

    /// Every layer's state; `resetObserved` starts a new observation period.
    public func snapshot(resetObserved: Bool = false) -> (layers: [Int: LayerState], updates: Int) {
        state.withLock { s in
            let result = (s.layers, s.updates)
            if resetObserved { for layer in s.layers.keys { s.layers[layer]!.observed = Change() } }
            return result
        }
    }

    /// Non-zero biases by layer (what is persisted).
    public var biases: [Int: [Float]] {
        state.withLock { s in s.layers.compactMapValues { $0.bias.contains { $0 != 0 } ? $0.bias : nil } }
    }
}
