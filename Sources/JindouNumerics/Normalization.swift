// RMSNorm as the Qwen3/GLM4 modeling files define it (`Qwen3MoeRMSNorm.forward`):
//   y = weight * (x * rsqrt(mean(x²) + eps))
// with the squares summed in double and the mean rounded to float once, as ggml's
// `ggml_compute_forward_rms_norm_f32` does: the output then equals llama.cpp's bit for bit,
// so the 8-bit rounding of the next matmul's activations (which a 1-ulp difference can
// move by a whole step) lands on the same values. Within round-off of transformers' fp32.
// Reads `width` floats of x and of weight per row; trivially bandwidth-bound.

/// Normalises `rows` rows of `width` floats from `x` into `y` (may alias).
public func rmsNorm(
    _ x: UnsafePointer<Float>, rows: Int, width: Int, weight: UnsafePointer<Float>, epsilon: Float,
    into y: UnsafeMutablePointer<Float>
) {
    for row in 0..<rows {
        let input = x + row * width
        let output = y + row * width
        var sum: Double = 0
        for i in 0..<width { sum += Double(input[i] * input[i]) }
        let mean = Float(sum / Double(width))
        let scale = 1 / (mean + epsilon).squareRoot()
        for i in 0..<width { output[i] = weight[i] * (input[i] * scale) }
    }
}

/// LayerNorm with bias (`nn.LayerNorm`): y = (x − mean) / √(var + eps) · weight + bias,
/// biased variance, per row of `width` floats. `x` and `y` may alias.
public func layerNorm(
    _ x: UnsafePointer<Float>, rows: Int, width: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    epsilon: Float, into y: UnsafeMutablePointer<Float>
) {
    for row in 0..<rows {
        let input = x + row * width
        let output = y + row * width
        var sum: Float = 0
        for i in 0..<width { sum += input[i] }
        let mean = sum / Float(width)
        var squares: Float = 0
        for i in 0..<width {
            let d = input[i] - mean
            squares += d * d
        }
        let scale = 1 / (squares / Float(width) + epsilon).squareRoot()
        for i in 0..<width { output[i] = (input[i] - mean) * scale * weight[i] + bias[i] }
    }
}
