import JindouNumerics

/// How router logits become expert scores.
public enum ScoringFunction: String, Sendable, Codable {
    /// Qwen3-MoE, Mixtral: softmax over all experts.
    case softmax
    /// GLM4-MoE, DeepSeek-V3: independent sigmoid per expert.
    case sigmoid
}

/// The routing rules a checkpoint declares.
public struct RouterConfiguration: Sendable, Equatable {
    public var expertCount: Int
    /// `num_experts_per_tok`: K when a request does not choose, and the most `auto` uses.
    public var expertsPerToken: Int
    public var scoring: ScoringFunction
    /// `norm_topk_prob`: renormalise the chosen weights to sum to one.
    public var normalizeTopK: Bool
    /// `routed_scaling_factor`, applied after renormalisation.
    public var routedScalingFactor: Float
    /// `n_group` (1 = no group limit).
    public var groupCount: Int
    /// `topk_group`: groups a token may pick experts from.
    public var groupsPerToken: Int
    /// Added to the renormalisation denominator (GLM4/DeepSeek add 1e-20).
    public var normalizationEpsilon: Float

    public init(
        expertCount: Int, expertsPerToken: Int, scoring: ScoringFunction, normalizeTopK: Bool,
        routedScalingFactor: Float = 1, groupCount: Int = 1, groupsPerToken: Int = 1,
        normalizationEpsilon: Float = 0
    ) {
        self.expertCount = expertCount
        self.expertsPerToken = expertsPerToken
        self.scoring = scoring
        self.normalizeTopK = normalizeTopK
        self.routedScalingFactor = routedScalingFactor
        self.groupCount = groupCount
        self.groupsPerToken = groupsPerToken
        self.normalizationEpsilon = normalizationEpsilon
    }

    public var expertsPerGroup: Int { expertCount / max(1, groupCount) }
}

/// Errors a caller can act on.
public enum RoutingError: Error, Equatable, CustomStringConvertible {
    case expertsPerTokenOutOfRange(requested: Int, expertCount: Int)
    case autoThresholdOutOfRange(Double)
    case biasLengthMismatch(kind: String, expected: Int, actual: Int)

    public var description: String {
        switch self {
        case .expertsPerTokenOutOfRange(let k, let n):
            "experts_per_token \(k) is out of range: this model has \(n) routed experts (use 1…\(n) or auto)"
        case .autoThresholdOutOfRange(let t):
            "auto experts-per-token threshold \(t) must be in (0, 1]"
        case .biasLengthMismatch(let kind, let expected, let actual):
            "\(kind) bias has \(actual) values, expected one per expert (\(expected))"
        }
    }
}

/// The one routing component every architecture uses (DESIGN invariant 2).
///
/// Mirrors `Qwen3MoeTopKRouter` (softmax, optional renormalisation) and
/// `Glm4MoeTopkRouter` / DeepSeek-V3's `MoEGate` (sigmoid, `e_score_correction_bias`
/// for selection only, group-limited top-k by the sum of each group's top two scores,
/// renormalisation with 1e-20, `routed_scaling_factor`), extended with:
/// - elastic experts-per-token (`ExpertsPerToken`). When a fixed K exceeds the experts
///   in the `topk_group` allowed groups, the token is allowed just enough extra groups
///   (best group scores first): `max(topk_group, ceil(K / experts_per_group))`.
/// - `auto`: the top-Kmax experts (Kmax = configured K) in descending selection order;
///   keep the smallest prefix whose raw scores reach `threshold` of the Kmax total.
/// - a serving-time balancing bias, like the correction bias used for selection only.
public struct Router: Sendable {
    public let configuration: RouterConfiguration
    /// The gate projection, `expertCount × hidden`.
    public let gate: WeightMatrix
    /// The checkpoint's `e_score_correction_bias` (selection only).
    public let correctionBias: [Float]?
    /// Serving-time balancing bias (selection only; Jindou's, not the checkpoint's).
    public private(set) var servingBias: [Float]?

    public init(configuration: RouterConfiguration, gate: WeightMatrix, correctionBias: [Float]? = nil) throws {
        if let bias = correctionBias, bias.count != configuration.expertCount {
            throw RoutingError.biasLengthMismatch(kind: "e_score_correction_bias", expected: configuration.expertCount, actual: bias.count)
        }
        self.configuration = configuration
        self.gate = gate
        self.correctionBias = correctionBias
    }

    /// Sets (or clears, with nil) the serving-time balancing bias.
    public mutating func setServingBias(_ bias: [Float]?) throws {
        if let bias, bias.count != configuration.expertCount {
            throw RoutingError.biasLengthMismatch(kind: "serving", expected: configuration.expertCount, actual: bias.count)
        }
        servingBias = bias
    }

    /// Checks a request's experts-per-token against this router.
    public func validate(_ choice: ExpertsPerToken) throws {
        switch choice {
        case .configured: break
        case .fixed(let k):
            if k < 1 || k > configuration.expertCount {
                throw RoutingError.expertsPerTokenOutOfRange(requested: k, expertCount: configuration.expertCount)
            }
        case .auto(let t):
            if !(t > 0 && t <= 1) { throw RoutingError.autoThresholdOutOfRange(t) }
        }
    }

    /// Router logits for `tokens` rows of `hidden` (`gate.columns` wide), in fp32.
    public func logits(hidden: UnsafePointer<Float>, tokens: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: tokens * configuration.expertCount) { buffer, count in
            linear(hidden, tokens: tokens, weight: gate, into: buffer.baseAddress!)
            count = tokens * configuration.expertCount
        }
    }

    /// Routes `tokens` rows of `hidden`; `expertsPerToken(t)` gives each token's choice.
    public func route(
        hidden: UnsafePointer<Float>, tokens: Int, expertsPerToken: (Int) -> ExpertsPerToken
    ) -> RoutingDecision {
        let logits = logits(hidden: hidden, tokens: tokens)
        return logits.withUnsafeBufferPointer { select(logits: $0.baseAddress!, tokens: tokens, expertsPerToken: expertsPerToken) }
    }

    /// Selection from precomputed router logits (`tokens × expertCount`).
    public func select(
        logits: UnsafePointer<Float>, tokens: Int, expertsPerToken: (Int) -> ExpertsPerToken
    ) -> RoutingDecision {
        let n = configuration.expertCount
        var decision = RoutingDecision()
        var scores = [Float](repeating: 0, count: n)
        var choice = [Float](repeating: 0, count: n)
        var order = [Int](repeating: 0, count: n)
        for t in 0..<tokens {
            let row = logits + t * n
            // 1. Scores.
            switch configuration.scoring {
            case .softmax:
                for e in 0..<n { scores[e] = row[e] }
                scores.withUnsafeMutableBufferPointer { softmaxInPlace($0.baseAddress!, count: n) }
            case .sigmoid:
                for e in 0..<n { scores[e] = sigmoid(row[e]) }
            }
            // 2. Selection scores: biases steer the choice, never the weights.
            for e in 0..<n { choice[e] = scores[e] }
            if let bias = correctionBias { for e in 0..<n { choice[e] += bias[e] } }
            if let bias = servingBias { for e in 0..<n { choice[e] += bias[e] } }

            let request = expertsPerToken(t)
            let selectCount: Int
            switch request {
            case .configured, .auto: selectCount = configuration.expertsPerToken
            case .fixed(let k): selectCount = min(max(1, k), n)
            }
            // 3. Group limit.
            if configuration.groupCount > 1 {
                maskGroups(&choice, selecting: selectCount)
            }
            // 4. Top-k by selection score, descending, ties to the lower index.
            let chosen = topIndices(choice, count: selectCount, scratch: &order)
            // 5. Elastic `auto`: shortest prefix reaching the threshold of the raw-score total.
            var kept = chosen.count
            if case .auto(let threshold) = request {
                var total: Float = 0
                for e in chosen { total += scores[e] }
                var running: Float = 0
                for (i, e) in chosen.enumerated() {
                    running += scores[e]
                    if Double(running) >= threshold * Double(total) {
                        kept = i + 1
                        break
                    }
                }
            }
            // 6. Weights from raw scores.
            var selected = Array(chosen.prefix(kept))
            var weights = selected.map { scores[$0] }
            if configuration.normalizeTopK {
                var sum: Float = 0
                for w in weights { sum += w }
                let denominator = sum + configuration.normalizationEpsilon
                for i in weights.indices { weights[i] /= denominator }
            }
            if configuration.routedScalingFactor != 1 {
                for i in weights.indices { weights[i] *= configuration.routedScalingFactor }
            }
            // 7. Ascending expert order: the order transformers sums expert outputs in.
            let permutation = selected.indices.sorted { selected[$0] < selected[$1] }
            let sortedWeights = permutation.map { weights[$0] }
            selected = permutation.map { selected[$0] }
            decision.append(experts: selected.map { Int32($0) }, weights: sortedWeights)
        }
        return decision
    }

    /// Group-limited routing (DeepSeek-V3 / GLM4): a group's score is the sum of its two
    /// best selection scores; experts outside the best groups are masked to -inf.
    private func maskGroups(_ choice: inout [Float], selecting k: Int) {
        let groups = configuration.groupCount
        let size = configuration.expertsPerGroup
        let allowed = min(groups, max(configuration.groupsPerToken, (k + size - 1) / size))
        if allowed >= groups { return }
        var groupScores = [Float](repeating: 0, count: groups)
        for g in 0..<groups {
            var best = -Float.infinity, second = -Float.infinity
            for e in (g * size)..<((g + 1) * size) {
                let v = choice[e]
                if v > best { second = best; best = v } else if v > second { second = v }
            }
            groupScores[g] = size >= 2 ? best + second : best
        }
        var groupOrder = [Int](repeating: 0, count: groups)
        let keep = Set(topIndices(groupScores, count: allowed, scratch: &groupOrder))
        for g in 0..<groups where !keep.contains(g) {
            for e in (g * size)..<((g + 1) * size) { choice[e] = -.infinity }
        }
    }
}

/// Indices of the `count` largest values, largest first, ties to the lower index.
func topIndices(_ values: [Float], count: Int, scratch: inout [Int]) -> [Int] {
    let n = values.count
    let k = min(count, n)
    if k <= 16 {
        // Insertion into a short sorted list: K is small for every real router.
        var best: [Int] = []
        best.reserveCapacity(k + 1)
        for i in 0..<n {
            let v = values[i]
            if best.count == k, let last = best.last, !(v > values[last]) { continue }
            var position = best.count
            while position > 0 && v > values[best[position - 1]] { position -= 1 }
            best.insert(i, at: position)
            if best.count > k { best.removeLast() }
        }
        return best
    }
    if scratch.count != n { scratch = Array(0..<n) } else { for i in 0..<n { scratch[i] = i } }
    scratch.sort { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }
    return Array(scratch.prefix(k))
}
