import ArgumentParser
import JindouBalancing
import JindouCoordinator

/// Routing statistics window and the serving-time balancing bias (`jindoud coordinator`, `jindoud local`).
struct BalancingOptions: ParsableArguments {
    @Option(name: .customLong("load-window"), help: "Seconds of routing statistics kept for the load report, /metrics and the serving bias.")
    var loadWindow: Int = 60

    @Flag(name: .customLong("balance-bias"), help: "Steer routing towards underloaded experts with a bounded serving-time bias (off by default; changes outputs).")
    var balanceBias = false

    @Option(name: .customLong("bias-gamma"), help: "Bias step per update (once a second): b -= gamma above the layer's mean load, += below.")
    var biasGamma: Float = 0.001

    @Option(name: .customLong("bias-cap"), help: "Bound on |b| per expert.")
    var biasCap: Float = 0.05

    @Option(name: .customLong("max-routing-change"), help: "Largest fraction of top-k choices the bias may change on sampled tokens; past it the bias is halved.")
    var maxRoutingChange: Double = 0.05

    @Option(name: .customLong("max-routing-kl"), help: "Also halve the bias while the mean KL(unbiased ‖ biased) of routing weights on sampled tokens exceeds this (default: not limited).")
    var maxRoutingKL: Double?

    @Option(name: .customLong("record-routing"),
            help: ArgumentHelp("Record the served routing (each token's experts, per MoE layer) as a trace for 'jindouctl balance simulate|plan'.",
                               valueName: "FILE"))
    var recordRouting: String?

    @Option(name: .customLong("replica-choice"),
            help: "How a step's tokens of a replicated expert are split over its copies: least-loaded (by that step's load per worker) or rotate (in turn).")
    var replicaChoice: String = "least-loaded"

    func validate() throws {
        guard ReplicaChoice(rawValue: replicaChoice) != nil else { throw ValidationError("--replica-choice must be least-loaded or rotate") }
        if let maxRoutingKL, maxRoutingKL < 0 { throw ValidationError("--max-routing-kl must be ≥ 0") }
        guard loadWindow >= 1 else { throw ValidationError("--load-window must be at least 1 second") }
        guard biasGamma > 0, biasCap > 0, biasGamma <= biasCap else { throw ValidationError("need 0 < --bias-gamma ≤ --bias-cap") }
        guard (0...1).contains(maxRoutingChange) else { throw ValidationError("--max-routing-change must be in 0…1") }
    }

    var servingBias: ServingBiasSettings? {
        balanceBias ? ServingBiasSettings(gamma: biasGamma, cap: biasCap, maxRoutingChange: maxRoutingChange, maxDivergence: maxRoutingKL) : nil
    }
}
