// RMSNorm as the Qwen3/GLM4 modeling files define it (`Qwen3MoeRMSNorm.forward`):
//   y = weight * (x * rsqrt(mean(x²) + eps))
// Reads `width` floats of x and of weight per row; trivially bandwidth-bound.

/// Normalises `rows` rows of `width` floats from `x` into `y` (may alias).
public func rmsNorm(
    _ x: UnsafePointer<Float>, rows: Int, width: Int, weight: UnsafePointer<Float>, epsilon: Float,
    into y: UnsafeMutablePointer<Float>
) {
    for row in 0..<rows {
        let input = x + row * width
        let output = y + row * width
        var sum: Float = 0
        for i in 0..<width { sum += input[i] * input[i] }
        let scale = 1 / (sum / Float(width) + epsilon).squareRoot()
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
