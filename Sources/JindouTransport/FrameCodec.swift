import JindouWire
import NIOCore

/// What the decoder hands up the pipeline: a frame, or a frame that could not be read.
public enum InboundFrame: Sendable {
    case frame(Frame)
    /// A bad frame. If `error.recoverable` is false the byte stream is lost and nothing
    /// more will be decoded on this connection.
    case invalid(FrameDecoder.DecodingError)
}

/// Thin NIO wrapper over `FrameDecoder`.
public struct FrameDecodingHandler: ByteToMessageDecoder {
    public typealias InboundOut = InboundFrame
    private var decoder: FrameDecoder
    private var failed = false

    public init(maximumPayloadLength: Int = WireProtocol.defaultMaximumPayloadLength) {
        decoder = FrameDecoder(maximumPayloadLength: maximumPayloadLength)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if failed {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        do {
            guard let frame = try decoder.decode(&buffer) else { return .needMoreData }
            context.fireChannelRead(wrapInboundOut(.frame(frame)))
            return .continue
        } catch {
            context.fireChannelRead(wrapInboundOut(.invalid(error)))
            if !error.recoverable {
                failed = true
                buffer.moveReaderIndex(to: buffer.writerIndex)
                return .needMoreData
            }
            return .continue
        }
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A partial frame at EOF is simply dropped: the peer went away mid-frame.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

/// Thin NIO wrapper over `FrameEncoder`.
public struct FrameEncodingHandler: MessageToByteEncoder {
    public typealias OutboundIn = Frame
    public init() {}
    public func encode(data: Frame, out: inout ByteBuffer) throws {
        try FrameEncoder.encode(data, into: &out)
    }
}

/// Frames out of a byte stream that arrives in pieces outside NIO (shared-memory rings,
/// RDMA receives): bytes are appended once and decoded in place by the TCP `FrameDecoder`,
/// so every transport validates frames identically.
struct FrameStream {
    private var decoder: FrameDecoder
    private var buffer = ByteBuffer()

    init(maximumPayloadLength: Int) {
        decoder = FrameDecoder(maximumPayloadLength: maximumPayloadLength)
    }

    /// Lets `fill` write up to `capacity` bytes at the end of the stream; returns how many it wrote.
    mutating func append(capacity: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { bytes in
            max(0, min(fill(UnsafeMutableRawBufferPointer(rebasing: bytes.prefix(capacity))), capacity))
        }
    }

    /// Delivers every whole frame, past recoverable errors (the bad frame was consumed);
    /// false when a fatal one lost the stream.
    mutating func deliverFrames(_ deliver: (InboundFrame) -> Void) -> Bool {
        while true {
            do {
                guard let frame = try decoder.decode(&buffer) else { break }
                deliver(.frame(frame))
            } catch {
                deliver(.invalid(error))
                if !error.recoverable { return false }
            }
        }
        // Frames handed up share this buffer's storage; the next bytes go into a fresh one
        // (holding the unfinished frame's bytes, if any) rather than copying it all.
        if buffer.readableBytes == 0 {
            buffer = ByteBuffer()
        } else if buffer.readerIndex > 0 {
            var rest = ByteBuffer()
            rest.reserveCapacity(buffer.readableBytes)
            rest.writeBuffer(&buffer)
            buffer = rest
        }
        return true
    }
}
