/// DeepSeek-V3's auxiliary-loss-free balancing rule (technical report §2.1.2), applied at
/// serving time: a per-expert bias added to the selection scores only. After each window an
/// expert loaded above its layer's mean gets `b −= γ`, one below gets `b += γ`; Jindou
/// bounds |b| ≤ cap. The one place this rule lives: the coordinator's online controller and
/// the offline simulator (JindouBalancing) both call it.
public enum BalancingBias {
    /// One update of a layer's `bias` from that layer's per-expert `load` in a window.
    /// `gamma` 0 leaves the bias unchanged.
    public static func update(_ bias: inout [Float], load: [Double], gamma: Float, cap: Float) {
        precondition(bias.count == load.count, "bias for \(bias.count) experts, load for \(load.count)")
        guard gamma > 0, !load.isEmpty else { return }
        let mean = load.reduce(0, +) / Double(load.count)
        for e in bias.indices {
            if load[e] > mean { bias[e] -= gamma } else if load[e] < mean { bias[e] += gamma }
            bias[e] = min(cap, max(-cap, bias[e]))
        }
    }
}
