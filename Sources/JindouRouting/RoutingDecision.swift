/// Which routed experts each token of a batch uses, and with what weight.
///
/// Stored as compressed rows: token `t`'s choices are `experts[offsets[t]..<offsets[t+1]]`
/// with matching `weights`, experts in ascending index order (transformers sums expert
/// outputs in that order).
public struct RoutingDecision: Sendable, Equatable {
    public private(set) var offsets: [Int]
    public private(set) var experts: [Int32]
    public private(set) var weights: [Float]

    public init() {
        offsets = [0]
        experts = []
        weights = []
    }

    /// An empty decision with room for `tokens` tokens and `assignments` choices, so
    /// appending them makes no further allocation (three arrays in all).
    public init(reservingTokens tokens: Int, assignments: Int) {
        offsets = []
        offsets.reserveCapacity(tokens + 1)
        offsets.append(0)
        experts = []
        experts.reserveCapacity(assignments)
        weights = []
        weights.reserveCapacity(assignments)
    }

    public init(offsets: [Int], experts: [Int32], weights: [Float]) {
        precondition(offsets.first == 0 && offsets.last == experts.count && experts.count == weights.count)
        self.offsets = offsets
        self.experts = experts
        self.weights = weights
    }

    public var tokenCount: Int { offsets.count - 1 }

    /// Total (token, expert) pairs: the work the experts do for this batch.
    public var assignmentCount: Int { experts.count }

    /// Appends one token's choices (must be sorted by expert index).
    public mutating func append(experts chosen: some Collection<Int32>, weights chosenWeights: some Collection<Float>) {
        experts.append(contentsOf: chosen)
        weights.append(contentsOf: chosenWeights)
        offsets.append(experts.count)
    }

    /// Appends one token's `count` choices, `choice(i)` giving the i-th (sorted by expert).
    public mutating func appendToken(count: Int, _ choice: (Int) -> (expert: Int32, weight: Float)) {
        for i in 0..<count {
            let (expert, weight) = choice(i)
            experts.append(expert)
            weights.append(weight)
        }
        offsets.append(experts.count)
    }

    /// Token `t`'s (expert, weight) pairs.
    public func choices(ofToken t: Int) -> [(expert: Int, weight: Float)] {
        (offsets[t]..<offsets[t + 1]).map { (Int(experts[$0]), weights[$0]) }
    }

    /// Number of experts token `t` uses.
    public func expertCount(ofToken t: Int) -> Int { offsets[t + 1] - offsets[t] }
}

extension RoutingDecision {
    /// The choices of experts below `first` (kept, in order), and per token the summed weight
    /// of its choices from `first` on: zero-computation experts, whose output is the input.
    public func splittingIdentityExperts(from first: Int) -> (routing: RoutingDecision, identityWeights: [Float]) {
        var kept = RoutingDecision(reservingTokens: tokenCount, assignments: experts.count)
        var identity = [Float](repeating: 0, count: tokenCount)
        for t in 0..<tokenCount {
            var choices: [(Int32, Float)] = []
            for i in offsets[t]..<offsets[t + 1] {
                if Int(experts[i]) < first { choices.append((experts[i], weights[i])) } else { identity[t] += weights[i] }
            }
            kept.append(experts: choices.map(\.0), weights: choices.map(\.1))
        }
        return (kept, identity)
    }
}

