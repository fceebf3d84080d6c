import Foundation
import JindouRouting

/// A set of dispatches with the combines Jindou's expert code computes for them, written as
/// text for other implementations of the wire protocol (`tools/probe/jindou-probe.c`) to
/// send to a live worker and check (`jindouctl wire-case`).
///
/// Format (whitespace-separated words; floats in shortest round-trip decimal):
///
///     jindou-probe-case 1
///     fingerprint HEX
///     dispatch LAYER TOKENS HIDDEN
///     route N EXPERT WEIGHT …      one line per token, N (expert, weight) pairs
///     hidden …                     TOKENS × HIDDEN values, row after row
///     expected …                   TOKENS × HIDDEN values: the COMBINE payload
///     (more dispatch blocks)
public struct WireCase: Sendable {
    public struct Dispatch: Sendable {
        public var layer: Int
        public var routing: RoutingDecision
        public var hidden: [Float]
        public var expected: [Float]
    }

    public var fingerprint: String
    public var hiddenSize: Int
    public var dispatches: [Dispatch]

    /// One dispatch of `tokens` tokens for each of the first `layerLimit` MoE layers: random
    /// hidden states of unit scale, each token routed to `expertsPerToken` (default the
    /// model's) distinct experts drawn from `experts` (default all routed experts) with
    /// random weights that sum to 1. Expected values from `ExpertShard` on `source`.
    public init(source: any WeightSource, tokens: Int = 3, layerLimit: Int = 4, experts: [Int]? = nil,
                expertsPerToken: Int? = nil, seed: UInt64 = 1) throws {
        let description = try source.modelDescription()
        let pool = experts ?? Array(0..<description.expertCount)
        let perToken = min(expertsPerToken ?? description.router.expertsPerToken, pool.count)
        guard tokens > 0, perToken > 0, !description.sparseLayers.isEmpty else {
            throw WireCaseError.nothingToDispatch(
                reason: description.sparseLayers.isEmpty ? "the model has no MoE layers" : "no tokens or no experts to route to")
        }
        if let bad = pool.first(where: { $0 < 0 || $0 >= description.expertCount }) {
            throw WireCaseError.nothingToDispatch(reason: "expert \(bad) is not in 0…\(description.expertCount - 1)")
        }
        var random = SplitMix64(seed: seed)
        func uniform() -> Float { Float(random.next() >> 40) / Float(1 << 24) }
        let width = description.hiddenSize
        fingerprint = try source.fingerprint()
        hiddenSize = width
        dispatches = []
        for layer in description.sparseLayers.prefix(layerLimit) {
            var routing = RoutingDecision()
            var used = Set<Int>()
            for _ in 0..<tokens {
                var chosen: [Int32] = []
                var remaining = pool
                for _ in 0..<perToken {
                    chosen.append(Int32(remaining.remove(at: Int(random.next() % UInt64(remaining.count)))))
                }
                // Ascending, as routers hand them to workers; weights normalised to 1.
                chosen.sort()
                let raw = chosen.map { _ in 0.1 + uniform() }
                let total = raw.reduce(0, +)
                routing.append(experts: chosen, weights: raw.map { $0 / total })
                used.formUnion(chosen.map(Int.init))
            }
            let hidden = (0..<tokens * width).map { _ in 2 * uniform() - 1 }
            let shard = try ExpertShard(description: description, checkpoint: source,
                                        keys: used.sorted().map { ExpertKey(layer: layer, expert: $0) })
            let expected = try shard.compute(layer: layer, hidden: hidden, tokenCount: tokens, routing: routing)
            dispatches.append(Dispatch(layer: layer, routing: routing, hidden: hidden, expected: expected))
        }
    }

    /// The case as text (the format above).
    public var text: String {
        var lines = ["jindou-probe-case 1", "fingerprint \(fingerprint)"]
        func values(_ label: String, _ values: [Float]) {
            for start in stride(from: 0, to: values.count, by: hiddenSize) {
                let row = values[start..<min(start + hiddenSize, values.count)].map(\.description).joined(separator: " ")
                lines.append(start == 0 ? "\(label) \(row)" : "  \(row)")
            }
        }
        for dispatch in dispatches {
            let routing = dispatch.routing
            lines.append("dispatch \(dispatch.layer) \(routing.tokenCount) \(hiddenSize)")
            for token in 0..<routing.tokenCount {
                let range = routing.offsets[token]..<routing.offsets[token + 1]
                let pairs = range.map { "\(routing.experts[$0]) \(routing.weights[$0].description)" }
                lines.append("route \(range.count) " + pairs.joined(separator: " "))
            }
            values("hidden", dispatch.hidden)
            values("expected", dispatch.expected)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

public enum WireCaseError: Error, CustomStringConvertible {
    case nothingToDispatch(reason: String)

    public var description: String {
        switch self {
        case .nothingToDispatch(let reason): "cannot write a wire case: \(reason)"
        }
    }
}
