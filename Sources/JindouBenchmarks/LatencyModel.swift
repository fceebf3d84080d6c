import Foundation
import JindouModel
import JindouRouting
import Synchronization

/// The decode-step model of docs/performance.md: what a step of B tokens costs on an
/// expert-parallel cluster, from the layers, the link and the compute on each side.
///
/// A step runs every layer once. Per MoE layer the coordinator dispatches the layer's
/// tokens and waits for the combines: one round trip, the payload bytes over the busiest
/// link (store-and-forward: the dispatch arrives whole before the worker computes, then the
/// combine travels back), and the busiest worker's expert time. Everything else the step
/// does — attention, norms, router, shared experts, dense layers, LM head — is coordinator
/// time that no exchange hides. So, with one micro-batch,
///
///     T(B) = c(B) + L · (RTT + B·bytes/bandwidth + w(B))
///
/// with c linear in the tokens and w linear in the tokens or — with `expertReads` — in the
/// experts the busiest worker touches: a memory-bound worker reads each touched expert
/// once per step, and B tokens of K experts touch E_w · (1 − (1 − 1/E)^(K·B)) of its E_w,
/// which grows fast at small B and saturates (8 tokens of Qwen3-30B's 8-of-128 touch half
/// the experts, 32 tokens 87 %). Both fitted from two measured batch sizes. Two
/// micro-batches of B/2 pipeline per layer: while one exchanges, the other computes, so a
/// layer takes max(2·c(B/2)/L, c(B/2)/L + exchange(B/2)) plus one layer of fill. When the
/// coordinator and the workers share the same cores (one machine, as in `bench network`),
/// only the link's time can hide behind compute: the compute of both halves serialises, so
/// a layer takes max(2·(c(B/2)/L + w(B/2)), c(B/2)/L + exchange(B/2)).
/// Speculation processes B·(1 + d) tokens per step and keeps B·k of them (k tokens per
/// step per sequence, measured).
public struct LatencyModel: Codable, Sendable, Equatable {
    /// MoE layers: one dispatch + combine round trip each per step.
    public var moeLayers: Int
    /// Round trip of the link, seconds.
    public var roundTripSeconds: Double
    /// One direction's goodput, bytes per second.
    public var bytesPerSecond: Double
    /// Dispatch + combine payload bytes per token per MoE layer on the busiest link.
    public var bytesPerTokenPerLayer: Double
    /// Coordinator time per step not hidden by exchanges: fixed + per token.
    public var coordinatorFixedSeconds: Double
    public var coordinatorPerTokenSeconds: Double
    /// Busiest worker's time per MoE layer beyond the link (experts, framing): fixed + per token.
    public var workerFixedSeconds: Double
    public var workerPerTokenSeconds: Double
    /// Whether coordinator and workers compute on the same cores (overlap hides only the link).
    public var sharedCompute: Bool
    /// When set, `workerPerTokenSeconds` is per touched expert of the busiest worker, not per token.
    public var expertReads: ExpertReads?

    /// Experts a step touches on the busiest worker.
    public struct ExpertReads: Codable, Sendable, Equatable {
        /// Routed experts of the model, experts chosen per token, experts on the busiest worker.
        public var experts: Double, perToken: Double, onWorker: Double
        public init(experts: Double, perToken: Double, onWorker: Double) {
            (self.experts, self.perToken, self.onWorker) = (experts, perToken, onWorker)
        }
        /// Expected distinct experts of the worker's `onWorker` that `tokens` tokens touch.
        public func touched(tokens: Double) -> Double {
            guard experts > 0, tokens > 0 else { return 0 }
            return onWorker * (1 - pow(1 - 1 / experts, perToken * tokens))
        }
    }

    public init(moeLayers: Int, roundTripSeconds: Double, bytesPerSecond: Double, bytesPerTokenPerLayer: Double,
                coordinatorFixedSeconds: Double, coordinatorPerTokenSeconds: Double, workerFixedSeconds: Double,
                workerPerTokenSeconds: Double, sharedCompute: Bool = false) {
        self.sharedCompute = sharedCompute
        self.moeLayers = moeLayers
        self.roundTripSeconds = roundTripSeconds
        self.bytesPerSecond = bytesPerSecond
        self.bytesPerTokenPerLayer = bytesPerTokenPerLayer
        self.coordinatorFixedSeconds = coordinatorFixedSeconds
        self.coordinatorPerTokenSeconds = coordinatorPerTokenSeconds
        self.workerFixedSeconds = workerFixedSeconds
        self.workerPerTokenSeconds = workerPerTokenSeconds
    }

    public func coordinatorSeconds(tokens: Double) -> Double { coordinatorFixedSeconds + coordinatorPerTokenSeconds * tokens }
    public func workerSeconds(tokens: Double) -> Double {
        workerFixedSeconds + workerPerTokenSeconds * (expertReads?.touched(tokens: tokens) ?? tokens)
    }

    /// One MoE layer's exchange: round trip, bytes both ways, the busiest worker.
    public func exchangeSeconds(tokens: Double) -> Double {
        roundTripSeconds + tokens * bytesPerTokenPerLayer / bytesPerSecond + workerSeconds(tokens: tokens)
    }

    /// Seconds of one step of `tokens` tokens.
    public func stepSeconds(tokens: Double, microBatches: Int = 1) -> Double {
        let layers = Double(moeLayers)
        guard microBatches >= 2, tokens >= 2 else { return coordinatorSeconds(tokens: tokens) + layers * exchangeSeconds(tokens: tokens) }
        let half = tokens / 2
        let perLayer = coordinatorSeconds(tokens: half) / layers
        let compute = sharedCompute ? 2 * (perLayer + workerSeconds(tokens: half)) : 2 * perLayer
        return layers * max(compute, perLayer + exchangeSeconds(tokens: half)) + perLayer
    }

    /// Decode tokens per second of `sequences` sequences, each drafting `drafts` tokens per
    /// step and keeping `tokensPerStep` of them on average (1 and 0 without speculation).
    public func decodeTokensPerSecond(sequences: Int, microBatches: Int = 1, drafts: Double = 0, tokensPerStep: Double = 1) -> Double {
        let s = Double(sequences)
        return s * tokensPerStep / stepSeconds(tokens: s * (1 + drafts), microBatches: microBatches)
    }

    /// The same calibration on another link.
    public func on(roundTripSeconds: Double, bytesPerSecond: Double) -> LatencyModel {
        var model = self
        model.roundTripSeconds = roundTripSeconds
        model.bytesPerSecond = bytesPerSecond
        return model
    }

    /// Fits c and w from steps measured at two batch sizes on a link with `roundTrip` and
    /// `bytesPerSecond`: per point, the step's total seconds and the seconds it waited for
    /// exchanges (summed over its MoE layers).
    public static func fit(moeLayers: Int, roundTripSeconds: Double, bytesPerSecond: Double, bytesPerTokenPerLayer: Double,
                           points: [(tokens: Double, stepSeconds: Double, exchangeSeconds: Double)],
                           sharedCompute: Bool = false, expertReads: ExpertReads? = nil) -> LatencyModel {
        let layers = Double(moeLayers)
        func line(_ values: [(Double, Double)]) -> (Double, Double) {
            guard values.count >= 2, let a = values.min(by: { $0.0 < $1.0 }), let b = values.max(by: { $0.0 < $1.0 }), b.0 > a.0 else {
                return (values.first?.1 ?? 0, 0)
            }
            let slope = (b.1 - a.1) / (b.0 - a.0)
            return (a.1 - slope * a.0, slope)
        }
        let coordinator = line(points.map { ($0.tokens, $0.stepSeconds - $0.exchangeSeconds) })
        let worker = line(points.map { point in
            (expertReads?.touched(tokens: point.tokens) ?? point.tokens,
             point.exchangeSeconds / layers - roundTripSeconds - point.tokens * bytesPerTokenPerLayer / bytesPerSecond)
        })
        var model = LatencyModel(moeLayers: moeLayers, roundTripSeconds: roundTripSeconds, bytesPerSecond: bytesPerSecond,
                                 bytesPerTokenPerLayer: bytesPerTokenPerLayer, coordinatorFixedSeconds: coordinator.0,
                                 coordinatorPerTokenSeconds: coordinator.1, workerFixedSeconds: worker.0, workerPerTokenSeconds: worker.1,
                                 sharedCompute: sharedCompute)
        model.expertReads = expertReads
        return model
    }
}

/// Times an expert backend's exchanges: the seconds a step spends waiting for routed
/// experts, so the latency model can split a step into coordinator and exchange time.
final class TimedExpertBackend: ExpertBackend {
    let inner: any ExpertBackend
    private let waited = Mutex<Double>(0)

    init(_ inner: any ExpertBackend) { self.inner = inner }

    var waitedSeconds: Double { waited.withLock { $0 } }
    func reset() { waited.withLock { $0 = 0 } }

    func routedExperts(layer: Int, hidden: [Float], tokenCount: Int, routing: RoutingDecision) async throws -> [Float] {
        let start = ContinuousClock.now
        defer {
            let seconds = (ContinuousClock.now - start).seconds
            waited.withLock { $0 += seconds }
        }
        return try await inner.routedExperts(layer: layer, hidden: hidden, tokenCount: tokenCount, routing: routing)
    }

    func step<Result: Sendable>(_ body: @Sendable () async throws -> Result) async throws -> Result { try await inner.step(body) }

    func route(layer: Int, router: Router, hidden: UnsafePointer<Float>, tokens: Int,
               expertsPerToken: (Int) -> ExpertsPerToken) -> RoutingDecision {
        inner.route(layer: layer, router: router, hidden: hidden, tokens: tokens, expertsPerToken: expertsPerToken)
    }

    var isRemote: Bool { inner.isRemote }
}
