#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JindouNumerics

/// How router logits become expert scores.
public enum ScoringFunction: String, Sendable, Codable {
    /// Qwen3-MoE, Mixtral: softmax over all experts.
    case softmax
    /// GLM4-MoE, DeepSeek-V3: independent sigmoid per expert.
    case sigmoid
    /// gpt-oss (`GptOssTopKRouter`): experts chosen by their logits, weights a softmax over
    /// the chosen experts' logits only.
    case softmaxTopK
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
    /// The gate Linear's own bias, added to the logits (gpt-oss's `router.bias`).
    public let logitBias: [Float]?
    /// Serving-time balancing bias (selection only; Jindou's, not the checkpoint's).
    public private(set) var servingBias: [Float]?

    public init(configuration: RouterConfiguration, gate: WeightMatrix, correctionBias: [Float]? = nil, logitBias: [Float]? = nil) throws {
        if let bias = correctionBias, bias.count != configuration.expertCount {
            throw RoutingError.biasLengthMismatch(kind: "e_score_correction_bias", expected: configuration.expertCount, actual: bias.count)
        }
        if let bias = logitBias, bias.count != configuration.expertCount {
            throw RoutingError.biasLengthMismatch(kind: "router logit", expected: configuration.expertCount, actual: bias.count)
        }
        self.configuration = configuration
        self.gate = gate
        self.correctionBias = correctionBias
        self.logitBias = logitBias
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
            computeLogits(hidden, tokens: tokens, into: buffer.baseAddress!)
            count = tokens * configuration.expertCount
        }
    }

    /// `F.linear(hidden, weight, bias)`: the gate product plus the logit bias, if any.
    private func computeLogits(_ hidden: UnsafePointer<Float>, tokens: Int, into logits: UnsafeMutablePointer<Float>) {
        if let logitBias {
            logitBias.withUnsafeBufferPointer { linear(hidden, tokens: tokens, weight: gate, bias: $0.baseAddress!, into: logits) }
        } else {
            linear(hidden, tokens: tokens, weight: gate, into: logits)
        }
    }

    /// Routes `tokens` rows of `hidden`; `expertsPerToken(t)` gives each token's choice.
    /// Allocates only the decision's three arrays: logits and every temporary live in the
    /// calling thread's scratch.
    public func route(
        hidden: UnsafePointer<Float>, tokens: Int, expertsPerToken: (Int) -> ExpertsPerToken
    ) -> RoutingDecision {
        let logits = threadScratch(.routerLogits, Float.self, count: tokens * configuration.expertCount)
        computeLogits(hidden, tokens: tokens, into: logits)
        return select(logits: logits, tokens: tokens, expertsPerToken: expertsPerToken)
    }

    /// Selection from precomputed router logits (`tokens × expertCount`).
    public func select(
        logits: UnsafePointer<Float>, tokens: Int, expertsPerToken: (Int) -> ExpertsPerToken
    ) -> RoutingDecision {
        let n = configuration.expertCount
        let groups = configuration.groupCount
        func selectionSize(_ request: ExpertsPerToken) -> Int {
            switch request {
            case .configured, .auto: configuration.expertsPerToken
            case .fixed(let k): min(max(1, k), n)
            }
        }
        var capacity = 0
        for t in 0..<tokens { capacity += selectionSize(expertsPerToken(t)) }
        var decision = RoutingDecision(reservingTokens: tokens, assignments: capacity)
        // Scratch: raw scores, selection scores, group scores, chosen weights; chosen
        // experts, index scratch for top-k, group flags.
        let floats = threadScratch(.routerScores, Float.self, count: 3 * n + groups)
        let scores = floats, choice = floats + n, groupScores = floats + 2 * n, weights = floats + 2 * n + groups
        let integers = threadScratch(.routerIndices, Int.self, count: 2 * n + 2 * groups)
        let chosen = integers, order = integers + n, groupOrder = integers + 2 * n, keptGroups = groupOrder + groups
        for t in 0..<tokens {
            let row = logits + t * n
            // 1. Scores.
            switch configuration.scoring {
            case .softmax:
                scores.update(from: row, count: n)
                softmaxInPlace(scores, count: n)
            case .sigmoid:
                for e in 0..<n { scores[e] = sigmoid(row[e]) }
            case .softmaxTopK:
                // exp(logit − max): the softmax numerators, whose share among the chosen
                // experts is their weight (set from the logits below).
                var maximum = -Float.infinity
                for e in 0..<n where row[e] > maximum { maximum = row[e] }
                for e in 0..<n { scores[e] = expf(row[e] - maximum) }
            }
            // 2. Selection scores: biases steer the choice, never the weights. Chosen by the
            // logits themselves for `softmaxTopK` (torch.topk on router_logits).
            choice.update(from: configuration.scoring == .softmaxTopK ? row : UnsafePointer(scores), count: n)
            if let bias = correctionBias { for e in 0..<n { choice[e] += bias[e] } }
            if let bias = servingBias { for e in 0..<n { choice[e] += bias[e] } }

            let request = expertsPerToken(t)
            let selectCount = selectionSize(request)
            // 3. Group limit.
            if groups > 1 {
                maskGroups(choice, selecting: selectCount, groupScores: groupScores, groupOrder: groupOrder, kept: keptGroups)
            }
            // 4. Top-k by selection score, descending, ties to the lower index.
            let chosenCount = topIndices(choice, n, count: selectCount, into: chosen, scratch: order)
            // 5. Elastic `auto`: shortest prefix reaching the threshold of the raw-score total.
            var kept = chosenCount
            if case .auto(let threshold) = request {
                var total: Float = 0
                for i in 0..<chosenCount { total += scores[chosen[i]] }
                var running: Float = 0
                for i in 0..<chosenCount {
                    running += scores[chosen[i]]
                    if Double(running) >= threshold * Double(total) {
                        kept = i + 1
                        break
                    }
                }
            }
            // 6. Weights from raw scores (softmax over the kept logits: `softmax(router_top_value)`).
            if configuration.scoring == .softmaxTopK {
                var maximum = -Float.infinity
                for i in 0..<kept where row[chosen[i]] > maximum { maximum = row[chosen[i]] }
                for i in 0..<kept { scores[chosen[i]] = expf(row[chosen[i]] - maximum) }
            }
            for i in 0..<kept { weights[i] = scores[chosen[i]] }
            if configuration.normalizeTopK {
                var sum: Float = 0
                for i in 0..<kept { sum += weights[i] }
                let denominator = sum + configuration.normalizationEpsilon
                for i in 0..<kept { weights[i] /= denominator }
            }
            if configuration.routedScalingFactor != 1 {
                for i in 0..<kept { weights[i] *= configuration.routedScalingFactor }
            }
            // 7. Ascending expert order: the order transformers sums expert outputs in
            // (insertion sort: K is small; the experts are distinct).
            for i in 1..<max(1, kept) {
                let (expert, weight) = (chosen[i], weights[i])
                var j = i
                while j > 0 && chosen[j - 1] > expert {
                    chosen[j] = chosen[j - 1]
                    weights[j] = weights[j - 1]
                    j -= 1
                }
                chosen[j] = expert
                weights[j] = weight
            }
            decision.appendToken(count: kept) { (Int32(chosen[$0]), weights[$0]) }
        }
        return decision
    }

    /// Group-limited routing (DeepSeek-V3 / GLM4): a group's score is the sum of its two
    /// best selection scores; experts outside the best groups are masked to -inf.
    private func maskGroups(
        _ choice: UnsafeMutablePointer<Float>, selecting k: Int, groupScores: UnsafeMutablePointer<Float>,
        groupOrder: UnsafeMutablePointer<Int>, kept: UnsafeMutablePointer<Int>
    ) {
        let groups = configuration.groupCount
        let size = configuration.expertsPerGroup
        let allowed = min(groups, max(configuration.groupsPerToken, (k + size - 1) / size))
        if allowed >= groups { return }
        for g in 0..<groups {
            var best = -Float.infinity, second = -Float.infinity
            for e in (g * size)..<((g + 1) * size) {
                let v = choice[e]
                if v > best { second = best; best = v } else if v > second { second = v }
            }
            groupScores[g] = size >= 2 ? best + second : best
        }
        let keptCount = topIndices(groupScores, groups, count: allowed, into: kept, scratch: groupOrder)
        for g in 0..<groups {
            var keep = false
            for i in 0..<keptCount where kept[i] == g { keep = true }
            if !keep {
                for e in (g * size)..<((g + 1) * size) { choice[e] = -.infinity }
            }
        }
    }
}

/// Writes the indices of the `count` largest of `n` values to `result`, largest first, ties
/// to the lower index; returns how many (`min(count, n)`). `scratch` holds `n` indices.
func topIndices(
    _ values: UnsafePointer<Float>, _ n: Int, count: Int, into result: UnsafeMutablePointer<Int>, scratch: UnsafeMutablePointer<Int>
) -> Int {
    let k = min(count, n)
    if k <= 0 { return 0 }
    if k <= 16 {
        // Insertion into a short sorted list: K is small for every real router.
        var size = 0
        for i in 0..<n {
            let v = values[i]
            if size == k && !(v > values[result[size - 1]]) { continue }
            var position = size
            while position > 0 && v > values[result[position - 1]] { position -= 1 }
            let end = min(size, k - 1)
            var j = end
            while j > position {
                result[j] = result[j - 1]
                j -= 1
            }
            result[position] = i
            size = min(size + 1, k)
        }
        return size
    }
    var indices = UnsafeMutableBufferPointer(start: scratch, count: n)
    for i in 0..<n { indices[i] = i }
    indices.sort { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }
    result.update(from: scratch, count: k)
    return k
}
