import Foundation

/// How the next token is chosen. `temperature == 0` is greedy (argmax, first index on ties,
/// like `torch.argmax`); otherwise temperature → top-k → top-p → draw, in the order
/// transformers applies its logits warpers.
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Float
    /// Keep the k most likely tokens (0 = off).
    public var topK: Int
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    public var topP: Float
    /// Seed for reproducible sampling; nil draws a random one.
    public var seed: UInt64?
    /// Keep the tokens whose probability is at least `minP` × the most likely one's (0 = off;
    /// transformers' MinPLogitsWarper, applied after top-p).
    public var minP: Float = 0
    /// transformers' RepetitionPenaltyLogitsProcessor (1 = off): every token of the prompt and
    /// of the output so far has its logit divided by it when positive, multiplied when negative.
    public var repetitionPenalty: Float = 1
    /// OpenAI's penalties over the output so far: logit −= frequency × count + presence × (count > 0).
    public var presencePenalty: Float = 0
    public var frequencyPenalty: Float = 0
    /// OpenAI's `logit_bias`: added to the token's logit before sampling (−100 bans, +100 forces).
    public var logitBias: [Int: Float] = [:]

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    /// Whether the logits are changed before temperature (penalties, bias): then the choice
    /// depends on the sequence's history, and speculative drafts are not verified for it.
    public var adjustsLogits: Bool {
        repetitionPenalty != 1 || presencePenalty != 0 || frequencyPenalty != 0 || !logitBias.isEmpty
    }

    /// The logits the choice is made from: repetition penalty over `prompt` + `output`, then
    /// presence and frequency penalties over `output`, then the bias (vLLM's order).
    public func adjusted(_ logits: [Float], prompt: [Int], output: [Int]) -> [Float] {
        guard adjustsLogits else { return logits }
        var result = logits
        if repetitionPenalty != 1 {
            for token in Set(prompt).union(output) where result.indices.contains(token) {
                result[token] = result[token] > 0 ? result[token] / repetitionPenalty : result[token] * repetitionPenalty
            }
        }
        if presencePenalty != 0 || frequencyPenalty != 0 {
            var counts: [Int: Int] = [:]
            for token in output { counts[token, default: 0] += 1 }
            for (token, count) in counts where result.indices.contains(token) {
                result[token] -= frequencyPenalty * Float(count) + presencePenalty
            }
        }
        for (token, bias) in logitBias where result.indices.contains(token) { result[token] += bias }
        return result
    }

    public static let greedy = SamplingParameters()

    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else {
            throw EngineError.invalidParameter(name: "temperature", reason: "must be a finite number ≥ 0, got \(temperature)")
        }
        guard topK >= 0 else { throw EngineError.invalidParameter(name: "top_k", reason: "must be ≥ 0, got \(topK)") }
        guard topP > 0, topP <= 1 else {
            throw EngineError.invalidParameter(name: "top_p", reason: "must be in (0, 1], got \(topP)")
        }
        guard minP >= 0, minP <= 1 else { throw EngineError.invalidParameter(name: "min_p", reason: "must be in [0, 1], got \(minP)") }
        guard repetitionPenalty > 0, repetitionPenalty.isFinite else {
            throw EngineError.invalidParameter(name: "repetition_penalty", reason: "must be a finite number > 0, got \(repetitionPenalty)")
        }
        guard presencePenalty.isFinite, frequencyPenalty.isFinite, logitBias.values.allSatisfy(\.isFinite) else {
            throw EngineError.invalidParameter(name: "presence_penalty", reason: "penalties and biases must be finite")
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and reproducible across platforms.
/// Inlinable: synthetic traces and benchmark data draw hundreds of millions of values.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    @usableFromInline var state: UInt64
    @inlinable public init(seed: UInt64) { state = seed }
    @inlinable public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Draws tokens from logits according to `SamplingParameters`.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var generator: SplitMix64

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        generator = SplitMix64(seed: parameters.seed ?? UInt64.random(in: .min ... .max))
    }

    /// Index of the largest logit (first on ties).
    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        for i in logits.indices where logits[i] > logits[best] { best = i }
        return best
    }

    public mutating func sample(_ logits: [Float]) -> Int {
        if parameters.temperature == 0 || logits.count == 1 { return Self.argmax(logits) }
        let (tokens, probabilities) = distribution(logits)
        var draw = uniform()
        for (i, p) in probabilities.enumerated() {
            draw -= p
            if draw < 0 { return tokens[i] }
        }
        return tokens[tokens.count - 1]
    }

    /// The tokens this sampler can draw from `logits` (temperature, top-k, top-p applied),
    /// most likely first, with their probabilities (summing to 1).
    func distribution(_ logits: [Float]) -> (tokens: [Int], probabilities: [Float]) {
        let scaled = logits.map { $0 / parameters.temperature }
        var order = Array(scaled.indices).sorted { scaled[$0] > scaled[$1] || (scaled[$0] == scaled[$1] && $0 < $1) }
        if parameters.topK > 0 && parameters.topK < order.count { order.removeLast(order.count - parameters.topK) }
        let maximum = scaled[order[0]]
        var probabilities = order.map { expf(scaled[$0] - maximum) }
        var total = probabilities.reduce(0, +)
        if parameters.topP < 1 {
            var cumulative: Float = 0
            var keep = probabilities.count
            for (i, p) in probabilities.enumerated() {
                cumulative += p / total
                if cumulative >= parameters.topP {
                    keep = i + 1
                    break
                }
            }
            probabilities.removeLast(probabilities.count - keep)
            order.removeLast(order.count - keep)
            total = probabilities.reduce(0, +)
        }
        if parameters.minP > 0 {
            // p ≥ min_p · p_max, p_max = probabilities[0] (the order is most likely first).
            let threshold = parameters.minP * probabilities[0]
            let keep = max(1, probabilities.firstIndex { $0 < threshold } ?? probabilities.count)
            probabilities.removeLast(probabilities.count - keep)
            order.removeLast(order.count - keep)
            total = probabilities.reduce(0, +)
        }
        return (order, probabilities.map { $0 / total })
    }

    /// A uniform draw in [0, 1) from this sampler's generator.
    mutating func uniform() -> Float {
        Float(Double(generator.next() >> 11) / Double(1 << 53))
    }
}

/// One generated token's log-probabilities under the model (log-softmax of its raw logits,
/// before penalties, bias and temperature: vLLM's default `raw_logprobs`).
public struct TokenLogprobs: Sendable, Equatable {
    public var token: Int
    public var logprob: Float
    /// The `count` most likely tokens, most likely first (ties to the lower id).
    public var top: [(token: Int, logprob: Float)]

    public init(token: Int, logits: [Float], top count: Int) {
        var maximum = -Float.infinity
        for v in logits where v > maximum { maximum = v }
        var sum: Double = 0
        for v in logits { sum += Double(expf(v - maximum)) }
        let normaliser = maximum + Float(log(sum))
        self.token = token
        logprob = logits[token] - normaliser
        top = count <= 0 ? [] : largestIndices(logits, count: count).map { ($0, logits[$0] - normaliser) }
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.token == b.token && a.logprob == b.logprob && a.top.map(\.token) == b.top.map(\.token) && a.top.map(\.logprob) == b.top.map(\.logprob)
    }
}

/// The indices of the `count` largest values, largest first, ties to the lower index (the
/// logprobs' alternatives; the sparse-attention indexer's positions): a min-heap of the best
/// seen so far, O(values · log count).
func largestIndices(_ values: [Float], count k: Int) -> [Int] {
    guard values.count > k else {
        return values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }
    }
    guard k > 0 else { return [] }
    // `worse(a, b)`: a ranks below b.
    func worse(_ a: Int, _ b: Int) -> Bool { values[a] < values[b] || (values[a] == values[b] && a > b) }
    var heap = Array(0..<k)
    func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var lowest = i
            if l < k && worse(heap[l], heap[lowest]) { lowest = l }
            if r < k && worse(heap[r], heap[lowest]) { lowest = r }
            if lowest == i { return }
            heap.swapAt(i, lowest)
            i = lowest
        }
    }
    for i in Swift.stride(from: k / 2 - 1, through: 0, by: -1) { siftDown(i) }
    for j in k..<values.count where worse(heap[0], j) {
        heap[0] = j
        siftDown(0)
    }
    return heap.sorted { worse($1, $0) }
}

/// A rule a sequence's tokens must follow (constrained decoding: structured outputs, forced
/// tool calls), applied to the logits before sampling, one sequence at a time.
public protocol TokenConstraint: Sendable {
    /// Whether each token of the vocabulary may come next.
    func allowedTokens(vocabularySize: Int) -> [Bool]
    /// Takes the token that was chosen.
    mutating func accept(_ token: Int)
}

extension TokenConstraint {
    /// `logits` with the tokens the constraint forbids at −∞.
    public func masked(_ logits: [Float]) -> [Float] {
        let allowed = allowedTokens(vocabularySize: logits.count)
        var result = logits
        for i in result.indices where !allowed[i] { result[i] = -.infinity }
        return result
    }
}
