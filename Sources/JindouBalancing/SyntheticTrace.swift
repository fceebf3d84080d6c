import Foundation
import JindouModel

// Synthetic skewed routing: Zipf(s) popularity over E experts, a different random hot set
// (permutation) per layer, optionally re-drawn every N steps, and top-k distinct experts per
// token.
//
// Every token gets a full score vector, so biased top-k can be recomputed (serving-bias
// simulation): logit_e = log p(rank of e) + Gumbel noise, score_e = sigmoid(logit_e). Taking
// the top-k logits is the Gumbel-top-k trick: it samples k experts *without replacement*
// with probabilities p, so the first choice of every token is exactly Zipf-distributed.
// Sigmoid is monotone, so unbiased selection on scores equals selection on logits (the
// DeepSeek-V3 router selects on sigmoid scores plus bias).
//
// Scores come from a counter-based generator keyed by (seed, layer, global token index), so
// the simulator regenerates any token's scores without storing them and traces are
// deterministic from the seed on any machine.

extension SplitMix64 {
    /// Uniform in the open interval (0, 1).
    @inline(__always) public mutating func nextUnit() -> Float {
        (Float(next() >> 40) + 0.5) * (1.0 / 16_777_216.0)
    }
}

/// The score model behind a synthetic trace.
public struct SyntheticRouting: Sendable {
    public let experts: Int
    public let layers: Int
    public let topK: Int
    public let parameters: SyntheticTraceParameters
    /// log p of popularity rank r (r from 0), p ∝ (r+1)^-s.
    public let logProbabilityOfRank: [Double]

    public init(experts: Int, layers: Int, topK: Int, parameters: SyntheticTraceParameters) {
        precondition(experts >= 1 && topK >= 1 && topK <= experts && layers >= 1)
        self.experts = experts
        self.layers = layers
        self.topK = topK
        self.parameters = parameters
        let weights = (1...experts).map { pow(Double($0), -parameters.zipf) }
        let logTotal = log(weights.reduce(0, +))
        logProbabilityOfRank = weights.map { log($0) - logTotal }
    }

    public init?(header: TraceHeader) {
        guard let parameters = header.synthetic else { return nil }
        self.init(experts: header.experts, layers: header.layers, topK: header.topK, parameters: parameters)
    }

    public var header: TraceHeader { TraceHeader(experts: experts, layers: layers, topK: topK, synthetic: parameters) }

    /// Which expert has popularity rank r in `layer` during hot-set epoch `epoch`
    /// (`hotSet[r]`): a Fisher–Yates shuffle seeded by (seed, layer, epoch).
    public func hotSet(layer: Int, epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: parameters.seed ^ 0xA5A5_5A5A_0000_0000 &+ UInt64(layer) &* 0x1_0001 &+ UInt64(epoch) &* 0x9E37_79B9)
        var order = Array(0..<experts)
        for i in stride(from: experts - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            order.swapAt(i, j)
        }
        return order
    }

    public func epoch(ofStep step: Int) -> Int { parameters.shiftEvery > 0 ? step / parameters.shiftEvery : 0 }

    /// log p per expert (`[expert]`) for a layer and epoch.
    public func logProbabilityOfExpert(layer: Int, epoch: Int) -> [Float] {
        var result = [Float](repeating: 0, count: experts)
        for (rank, expert) in hotSet(layer: layer, epoch: epoch).enumerated() { result[expert] = Float(logProbabilityOfRank[rank]) }
        return result
    }

    /// Writes token's sigmoid scores into `scores` (count `experts`). `token` counts from
    /// the start of the trace (step · tokensPerStep + index in step).
    @inline(__always)
    public func scores(layer: Int, token: Int, logProbability: UnsafeBufferPointer<Float>, into scores: UnsafeMutableBufferPointer<Float>) {
        var rng = SplitMix64(seed: parameters.seed &+ UInt64(layer) &* 0xD1B5_4A32_D192_ED03 &+ UInt64(token) &* 0x8CB9_2BA7_2F3D_8DD7)
        for e in 0..<experts {
            let gumbel = -logf(-logf(rng.nextUnit()))
            let logit = logProbability[e] + gumbel
            scores[e] = 1 / (1 + expf(-logit))
        }
    }

    /// The trace this model produces: `tokens` tokens in steps of `tokensPerStep`.
    public func generate(tokens: Int) -> RoutingTrace {
        let perStep = parameters.tokensPerStep
        let stepCount = (tokens + perStep - 1) / perStep
        var trace = RoutingTrace(header: header)
        var logProbability: [Int: [[Float]]] = [:]
        for step in 0..<stepCount {
            let epoch = epoch(ofStep: step)
            if logProbability[epoch] == nil {
                logProbability = [epoch: (0..<layers).map { logProbabilityOfExpert(layer: $0, epoch: epoch) }]
            }
            let tables = logProbability[epoch]!
            let stepTokens = min(perStep, tokens - step * perStep)
            let bias = [Float](repeating: 0, count: experts)
            trace.steps.append(route(step: step, tokens: stepTokens, logProbability: tables, bias: [[Float]](repeating: bias, count: layers)))
        }
        return trace
    }

    /// Routes one step with per-layer selection bias (`bias[layer][expert]`, added to the
    /// scores for selection only): top-k of score + bias per token, in descending order.
    /// `sample` routes only every n-th token (for the guard's sampled measurement).
    public func route(step: Int, tokens: Int, logProbability: [[Float]], bias: [[Float]], sample: Int = 1) -> TraceStep {
        let k = topK, e = experts
        let routed = (tokens + sample - 1) / sample
        var choices = [UInt16](repeating: 0, count: layers * routed * k)
        let firstToken = step * parameters.tokensPerStep
        choices.withUnsafeMutableBufferPointer { out in
            let out = UncheckedSendable(out)
            DispatchQueue.concurrentPerform(iterations: layers) { layer in
                let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: e)
                defer { scores.deallocate() }
                var bestScore = [Float](repeating: 0, count: k)
                var bestExpert = [Int](repeating: 0, count: k)
                logProbability[layer].withUnsafeBufferPointer { logp in
                    bias[layer].withUnsafeBufferPointer { b in
                        for slot in 0..<routed {
                            let token = slot * sample
                            self.scores(layer: layer, token: firstToken + token, logProbability: logp, into: scores)
                            var filled = 0
                            for x in 0..<e {
                                let s = scores[x] + b[x]
                                if filled == k && s <= bestScore[k - 1] { continue }
                                var i = filled < k ? filled : k - 1
                                while i > 0 && bestScore[i - 1] < s {
                                    bestScore[i] = bestScore[i - 1]; bestExpert[i] = bestExpert[i - 1]; i -= 1
                                }
                                bestScore[i] = s; bestExpert[i] = x
                                if filled < k { filled += 1 }
                            }
                            let base = (layer * routed + slot) * k
                            for j in 0..<k { out.value[base + j] = UInt16(bestExpert[j]) }
                        }
                    }
                }
            }
        }
        return TraceStep(tokens: routed, choices: choices)
    }
}

/// Carries a buffer into `concurrentPerform`, whose iterations write disjoint ranges of it.
/// Safe because each iteration writes only its own layer's slice and the caller waits for
/// all of them before reading.
struct UncheckedSendable<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
