/// How many routed experts each token uses: Jindou's *elastic experts*.
///
/// All expert weights stay resident; a request only changes how many of them its
/// tokens read. `auto` picks per token the smallest K whose share of the configured
/// top-K routing weight reaches `threshold` (see `Router`).
public enum ExpertsPerToken: Sendable, Hashable, CustomStringConvertible {
    /// The checkpoint's `num_experts_per_tok`.
    case configured
    /// Exactly this many experts per token (1…num_experts).
    case fixed(Int)
    /// Per token, the smallest K in 1…configured whose cumulative share reaches `threshold`.
    case auto(threshold: Double)

    public static let defaultAutoThreshold = 0.9

    /// Parses `"4"`, `"auto"` or `"auto:0.8"`.
    public init?(parsing text: String, defaultThreshold: Double = ExpertsPerToken.defaultAutoThreshold) {
        let lower = text.lowercased()
        if lower == "auto" {
            self = .auto(threshold: defaultThreshold)
        } else if lower.hasPrefix("auto:"), let t = Double(lower.dropFirst(5)), t > 0, t <= 1 {
            self = .auto(threshold: t)
        } else if let k = Int(text), k >= 1 {
            self = .fixed(k)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .configured: "configured"
        case .fixed(let k): String(k)
        case .auto(let t): t == ExpertsPerToken.defaultAutoThreshold ? "auto" : "auto:\(t)"
        }
    }
}

/// JSON form: an integer for a fixed K, `"auto"` / `"auto:T"`, or `"configured"`.
extension ExpertsPerToken: Codable {
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let k = try? container.decode(Int.self) {
            guard k >= 1 else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "experts_per_token must be ≥ 1, got \(k)")
            }
            self = .fixed(k)
            return
        }
        let text = try container.decode(String.self)
        if text == "configured" {
            self = .configured
        } else if let parsed = ExpertsPerToken(parsing: text) {
            self = parsed
        } else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "experts_per_token must be an integer, \"auto\" or \"auto:T\" with 0 < T ≤ 1, got \"\(text)\"")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .fixed(let k): try container.encode(k)
        case .configured: try container.encode("configured")
        case .auto: try container.encode(description)
        }
    }
}
