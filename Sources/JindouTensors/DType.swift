/// Element types of tensors as safetensors names them.
///
/// Weights stay in their checkpoint dtype in memory; kernels widen to `Float` in
/// registers and accumulate in fp32.
public enum DType: String, Sendable, CaseIterable, Codable {
    case float64 = "F64"
    case float32 = "F32"
    case float16 = "F16"
    case bfloat16 = "BF16"
    case float8E4M3 = "F8_E4M3"
    case float8E5M2 = "F8_E5M2"
    case int64 = "I64"
    case int32 = "I32"
    case int16 = "I16"
    case int8 = "I8"
    case uint8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .float8E4M3, .float8E5M2, .int8, .uint8, .bool: 1
        }
    }

    /// Whether matrix kernels read this dtype directly.
    public var isKernelWeightType: Bool {
        self == .float32 || self == .float16 || self == .bfloat16
    }
}

/// bfloat16 <-> Float conversions (bf16 is the upper half of an IEEE binary32).
public enum BFloat16Conversion {
    @inlinable
    public static func float(fromBits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Round-to-nearest-even, as torch's `.to(torch.bfloat16)` does; NaN stays NaN.
    @inlinable
    public static func bits(from value: Float) -> UInt16 {
        let raw = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (raw >> 16) | 0x0040) }
        let roundingBias: UInt32 = 0x7FFF + ((raw >> 16) & 1)
        return UInt16(truncatingIfNeeded: (raw &+ roundingBias) >> 16)
    }
}

/// Converts `count` elements of `dtype` at `source` to `Float`.
///
/// Used for small tensors (norm weights, biases, embedding rows) and for staging
/// weight tiles into fp32 for BLAS; the hot GEMV paths convert in registers instead.
public func convertToFloat(
    _ source: UnsafeRawPointer, dtype: DType, count: Int, into destination: UnsafeMutablePointer<Float>
) {
    switch dtype {
    case .float32:
        destination.update(from: source.assumingMemoryBound(to: Float.self), count: count)
    case .bfloat16:
        let bits = source.assumingMemoryBound(to: UInt16.self)
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(bits + i).loadUnaligned(as: SIMD8<UInt16>.self)
            let wide = SIMD8<UInt32>(truncatingIfNeeded: v) &<< 16
            UnsafeMutableRawPointer(destination + i).storeBytes(
                of: unsafeBitCast(wide, to: SIMD8<Float>.self), as: SIMD8<Float>.self)
            i += 8
        }
        while i < count {
            destination[i] = BFloat16Conversion.float(fromBits: bits[i])
            i += 1
        }
    case .float16:
        let halves = source.assumingMemoryBound(to: Float16.self)
        for i in 0..<count { destination[i] = Float(halves[i]) }
    case .float64:
        let doubles = source.assumingMemoryBound(to: Double.self)
        for i in 0..<count { destination[i] = Float(doubles[i]) }
    default:
        preconditionFailure("convertToFloat: \(dtype.rawValue) is not a floating-point weight type")
    }
}

/// Converts a whole tensor to a Swift array of `Float`.
public func floatArray(_ source: UnsafeRawPointer, dtype: DType, count: Int) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        convertToFloat(source, dtype: dtype, count: count, into: buffer.baseAddress!)
        initialized = count
    }
}
