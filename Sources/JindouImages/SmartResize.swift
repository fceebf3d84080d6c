import Foundation

// transformers/models/qwen2_vl/image_processing_pil_qwen2_vl.py, `smart_resize`
// (transformers 5.23), step by step in the same float64 arithmetic. Python's round() is
// round-half-to-even, hence `.toNearestOrEven`.

/// The target size Qwen2-VL/Qwen3-VL resize an image to: both sides multiples of `factor`
/// (patch size × merge size), `minPixels ≤ height × width ≤ maxPixels`, aspect ratio kept
/// as closely as possible.
public func smartResize(
    height: Int, width: Int, factor: Int, minPixels: Int, maxPixels: Int
) throws(VisionPreprocessingError) -> (height: Int, width: Int) {
    guard height > 0, width > 0 else { throw .zeroSized(height: height, width: width) }
    let ratio = Double(max(height, width)) / Double(min(height, width))
    if ratio > 200 { throw .aspectRatioTooLarge(height: height, width: width, ratio: ratio) }
    let f = Double(factor)
    var hBar = Int((Double(height) / f).rounded(.toNearestOrEven)) * factor
    var wBar = Int((Double(width) / f).rounded(.toNearestOrEven)) * factor
    if hBar * wBar > maxPixels {
        let beta = (Double(height * width) / Double(maxPixels)).squareRoot()
        hBar = max(factor, Int((Double(height) / beta / f).rounded(.down)) * factor)
        wBar = max(factor, Int((Double(width) / beta / f).rounded(.down)) * factor)
    } else if hBar * wBar < minPixels {
        let beta = (Double(minPixels) / Double(height * width)).squareRoot()
        hBar = Int((Double(height) * beta / f).rounded(.up)) * factor
        wBar = Int((Double(width) * beta / f).rounded(.up)) * factor
    }
    return (hBar, wBar)
}
