// Speculative decoding: a step feeds a sequence its pending token plus a few drafted ones,
// the model scores all of them in one forward pass (one dispatch per MoE layer for all of
// them in a cluster), and the drafts are accepted while the model agrees. Greedy output is
// identical to decoding one token at a time: each draft is kept only if it is the token the
// model chooses at that position, and the row kernels compute every token of a step with
// the same arithmetic as a one-token step. Sampling stays distributed as without drafts: a
// draft token x (a point mass) is accepted with probability p(x) under the sampler's own
// distribution and otherwise replaced by a draw from p without x (speculative sampling with
// a deterministic draft).

/// How drafts are made.
public enum SpeculationMode: String, Sendable, Codable, CaseIterable {
    case off
    /// Prompt lookup: the tokens that followed the latest earlier occurrence of the context's
    /// last n-gram (any model; pays off on repetitive text — code edits, quotes, lists).
    case ngram
    /// The checkpoint's multi-token-prediction layer drafts (MultiTokenPrediction.swift):
    /// DeepSeek-V3/V3.1, Kimi-K2, GLM-4.5+ where they ship it; mapped on the coordinator.
    case mtp
}

/// Speculative decoding settings (`--speculative`, `--draft-tokens`).
public struct SpeculationOptions: Sendable, Equatable {
    public var mode: SpeculationMode
    /// Most drafted tokens per step and sequence.
    public var draftTokens: Int
    /// The longest and shortest n-gram `ngram` looks up.
    public var maximumNgram: Int
    public var minimumNgram: Int

    public init(mode: SpeculationMode = .off, draftTokens: Int = 4, maximumNgram: Int = 3, minimumNgram: Int = 1) {
        self.mode = mode
        self.draftTokens = draftTokens
        self.maximumNgram = maximumNgram
        self.minimumNgram = minimumNgram
    }

    public static let off = SpeculationOptions()

    /// Drafts to try after `context` (prompt + generated tokens), at most `limit`.
    public func drafts(after context: [Int], limit: Int) -> [Int] {
        guard mode == .ngram, limit > 0 else { return [] }
        return NgramDrafter.propose(context: context, maximumDraft: min(limit, draftTokens),
                                    maximumNgram: maximumNgram, minimumNgram: minimumNgram)
    }
}

/// Prompt-lookup drafting (as vLLM's `ngram` speculator and llama.cpp's lookup decoding).
public enum NgramDrafter {
    /// The tokens after the most recent earlier occurrence of the context's last n tokens,
    /// trying n = `maximumNgram` down to `minimumNgram`; empty when none occurs.
    public static func propose(context: [Int], maximumDraft: Int, maximumNgram: Int = 3, minimumNgram: Int = 1) -> [Int] {
        let count = context.count
        guard maximumDraft > 0, count >= 2 else { return [] }
        for n in stride(from: min(maximumNgram, count - 1), through: max(1, minimumNgram), by: -1) {
            let suffixStart = count - n
            // Latest start s < suffixStart with context[s..<s+n] == the suffix.
            var s = suffixStart - 1
            while s >= 0 {
                var match = true
                for i in 0..<n where context[s + i] != context[suffixStart + i] {
                    match = false
                    break
                }
                if match {
                    let from = s + n
                    return Array(context[from..<min(count, from + maximumDraft)])
                }
                s -= 1
            }
        }
        return []
    }
}

/// What speculation did over a generation (or a server's lifetime).
public struct SpeculationStatistics: Sendable, Codable, Equatable {
    /// Drafted tokens the model scored.
    public var drafted = 0
    /// Drafted tokens it accepted.
    public var accepted = 0
    /// Decode steps (forward passes that produced tokens).
    public var steps = 0
    /// Tokens produced by those steps.
    public var tokens = 0

    public init() {}

    public var acceptanceRate: Double { drafted == 0 ? 0 : Double(accepted) / Double(drafted) }
    public var tokensPerStep: Double { steps == 0 ? 0 : Double(tokens) / Double(steps) }

    enum CodingKeys: String, CodingKey {
        case drafted = "drafted_tokens"
        case accepted = "accepted_tokens"
        case steps = "decode_steps"
        case tokens = "decode_tokens"
    }
}

extension Sampler {
    /// Chooses the token at a position whose draft was `draft`: greedy keeps the draft only
    /// if it is the argmax; sampling accepts it with its probability under this sampler's
    /// distribution and otherwise draws from that distribution without it. Returns the
    /// chosen token and whether it was the draft.
    public mutating func verify(_ logits: [Float], draft: Int) -> (token: Int, accepted: Bool) {
        if parameters.temperature == 0 || logits.count == 1 {
            let token = Self.argmax(logits)
            return (token, token == draft)
        }
        let (tokens, probabilities) = distribution(logits)
        let p = tokens.firstIndex(of: draft).map { probabilities[$0] } ?? 0
        if uniform() < p { return (draft, true) }
        // The residual max(0, p − q) with q the draft's point mass: p without the draft.
        var total: Float = 0
        for (token, probability) in zip(tokens, probabilities) where token != draft { total += probability }
        guard total > 0 else { return (draft, true) }
        var draw = uniform() * total
        for (token, probability) in zip(tokens, probabilities) where token != draft {
            draw -= probability
            if draw < 0 { return (token, false) }
        }
        return (tokens.last { $0 != draft } ?? draft, false)
    }
}
