import JindouTensors

/// One token of the (gated) delta rule for one value head, in place on `state` (dk × dv,
/// row-major fp32), through the running CPU's kernels (JindouKernelsGeneric/DeltaRuleStep.swift):
/// S ← S·f, f = `decay[0]` for the whole head (Gated DeltaNet) or `decay[i]` for row i
/// (`decayStride` 1: Kimi Delta Attention), the factors being e^g; delta = (v − Sᵀk)·β;
/// S ← S + k ⊗ delta; `out` (dv floats) = Sᵀq. Allocates nothing.
public func deltaRuleStep(
    state: UnsafeMutablePointer<Float>, keyDimension dk: Int, valueDimension dv: Int,
    query q: UnsafePointer<Float>, key k: UnsafePointer<Float>, value v: UnsafePointer<Float>, beta: Float,
    decay: UnsafePointer<Float>, decayStride: Int, into out: UnsafeMutablePointer<Float>
) {
    kernels.deltaRuleStep(state: state, keyDimension: dk, valueDimension: dv, query: q, key: k, value: v, beta: beta,
                                        decay: decay, decayStride: decayStride, into: out)
}
