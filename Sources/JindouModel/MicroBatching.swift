/// How a step's batch is split so the coordinator's work on one part overlaps the
/// workers' experts and the network of the other ("ping-pong", as MegaScale-Infer and
/// DeepSeek's dual micro-batch overlap do).
///
/// Each micro-batch runs every layer as its own step (`ExpertBackend.step`); while one
/// waits for its routed experts, the other computes attention, norms, the router and the
/// shared experts. Sequences never straddle micro-batches, so each sequence's cache sees
/// exactly the work a single batch would give it.
///
/// The price is that the coordinator reads its dense weights (attention, shared experts,
/// dense layers) once per micro-batch instead of once per step, which a memory-bound
/// decode pays in full; `auto` therefore splits only when the experts are remote and the
/// batch is large enough that each half still amortises those reads.
public enum MicroBatching: Sendable, Equatable, CustomStringConvertible {
    case auto
    /// 1 (no split) or 2.
    case fixed(Int)

    /// Sequences a step needs before `auto` splits it.
    public static let autoMinimumSequences = 4

    public init?(_ text: String) {
        switch text {
        case "auto": self = .auto
        case "1": self = .fixed(1)
        case "2": self = .fixed(2)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .auto: "auto"
        case .fixed(let n): "\(n)"
        }
    }

    /// The micro-batches of a step as index sets into `tokenCounts` (one entry per
    /// sequence), each in the original order. One group when the step is not split.
    public func groups(tokenCounts: [Int], remoteExperts: Bool) -> [[Int]] {
        let count: Int
        switch self {
        case .auto: count = remoteExperts && tokenCounts.count >= Self.autoMinimumSequences ? 2 : 1
        case .fixed(let n): count = min(n, tokenCounts.count)
        }
        guard count >= 2 else { return [Array(tokenCounts.indices)] }
        // Largest first onto the lighter group: token counts as even as possible, so
        // neither micro-batch leaves the other waiting.
        var groups: [[Int]] = Array(repeating: [], count: count)
        var load = [Int](repeating: 0, count: count)
        for s in tokenCounts.indices.sorted(by: { (tokenCounts[$0], $1) > (tokenCounts[$1], $0) }) {
            let lightest = load.indices.min { (load[$0], $0) < (load[$1], $1) }!
            groups[lightest].append(s)
            load[lightest] += tokenCounts[s]
        }
        return groups.filter { !$0.isEmpty }.map { $0.sorted() }
    }
}
