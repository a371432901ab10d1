package demoapp

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// A minimal RFC 6455 WebSocket echo server on the standard library: enough
// for the demo app to prove that upgrades pass through the gateway.

const (
	wsGUID       = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	wsOpCont     = 0x0
	wsOpText     = 0x1
	wsOpBinary   = 0x2
	wsOpClose    = 0x8
	wsOpPing     = 0x9
	wsOpPong     = 0xA
	wsMaxMessage = 64 << 10
	wsIdle       = 2 * time.Minute

	wsCloseNormal      = 1000
	wsCloseProtocol    = 1002
	wsCloseInvalidData = 1007
	wsCloseTooBig      = 1009
)

// wsAcceptKey is Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func wsAcceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsHeaderHasToken reports whether a comma-separated header contains token
// (case-insensitively).
func wsHeaderHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// wsCloseError is a protocol violation, answered with a close frame.
type wsCloseError struct {
	code   uint16
	reason string
}

func (e *wsCloseError) Error() string { return "websocket: " + e.reason }

type wsFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// wsReadFrame reads one client frame, which must be masked, and unmasks it.
func wsReadFrame(r io.Reader, maxLen uint64) (wsFrame, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{fin: hdr[0]&0x80 != 0, op: hdr[0] & 0x0f}
	if hdr[0]&0x70 != 0 {
		return f, &wsCloseError{wsCloseProtocol, "reserved bits set"}
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if f.op >= 0x8 && (!f.fin || n > 125) {
		return f, &wsCloseError{wsCloseProtocol, "bad control frame"}
	}
	if hdr[1]&0x80 == 0 {
		return f, &wsCloseError{wsCloseProtocol, "client frames must be masked"}
	}
	if n > maxLen {
		return f, &wsCloseError{wsCloseTooBig, "message too big"}
	}
	var key [4]byte
	if _, err := io.ReadFull(r, key[:]); err != nil {
		return f, err
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, err
	}
	for i := range f.payload {
		f.payload[i] ^= key[i%4]
	}
	return f, nil
}

// wsWriteFrame writes one unmasked, final server frame and flushes it.
func wsWriteFrame(w *bufio.Writer, op byte, payload []byte) error {
	_ = w.WriteByte(0x80 | op)
	switch n := len(payload); {
	case n < 126:
		_ = w.WriteByte(byte(n))
	case n <= 0xffff:
		_ = w.WriteByte(126)
		_ = binary.Write(w, binary.BigEndian, uint16(n))
	default:
		_ = w.WriteByte(127)
		_ = binary.Write(w, binary.BigEndian, uint64(n))
	}
	_, _ = w.Write(payload)
	return w.Flush()
}

func wsClosePayload(code uint16, reason string) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	return append(b, reason...)
}

// serveWebSocketEcho upgrades the request and echoes every text and binary
// message back, answers pings, and completes the closing handshake.
func serveWebSocketEcho(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	if !wsHeaderHasToken(r.Header, "Connection", "upgrade") || !wsHeaderHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "this endpoint speaks WebSocket only", http.StatusUpgradeRequired)
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "unsupported WebSocket version", http.StatusUpgradeRequired)
		return
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		http.Error(w, "bad Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "WebSocket upgrade not supported here", http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + wsAcceptKey(key) + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	log.Debug("demo app: websocket open", "remote", r.RemoteAddr)
	err = wsEcho(conn, brw.Reader, brw.Writer)
	var ce *wsCloseError
	if errors.As(err, &ce) {
		_ = wsWriteFrame(brw.Writer, wsOpClose, wsClosePayload(ce.code, ce.reason))
	}
	log.Debug("demo app: websocket closed", "remote", r.RemoteAddr, "err", err)
	wsLingeringClose(conn)
}

// wsLingeringClose half-closes the connection and drains what the peer
// still sends for a moment, so that closing with unread data (an oversized
// frame, say) does not reset the connection before the close frame is read.
func wsLingeringClose(conn net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	cw, ok := conn.(closeWriter)
	if !ok {
		return
	}
	_ = cw.CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
}

// wsEcho runs the echo loop until the peer closes (nil), the connection
// fails, or the peer breaks the protocol (*wsCloseError).
func wsEcho(conn net.Conn, br *bufio.Reader, bw *bufio.Writer) error {
	var msg []byte
	var msgOp byte // op of the message being reassembled; 0: none
	for {
		_ = conn.SetReadDeadline(time.Now().Add(wsIdle))
		f, err := wsReadFrame(br, wsMaxMessage)
		if err != nil {
			return err
		}
		switch f.op {
		case wsOpClose:
			switch {
			case len(f.payload) == 1:
				return &wsCloseError{wsCloseProtocol, "bad close payload"}
			case len(f.payload) >= 2:
				_ = wsWriteFrame(bw, wsOpClose, f.payload[:2])
			default:
				_ = wsWriteFrame(bw, wsOpClose, wsClosePayload(wsCloseNormal, ""))
			}
			return nil
		case wsOpPing:
			if err := wsWriteFrame(bw, wsOpPong, f.payload); err != nil {
				return err
			}
			continue
		case wsOpPong:
			continue
		case wsOpText, wsOpBinary:
			if msgOp != 0 {
				return &wsCloseError{wsCloseProtocol, "new message inside a fragmented one"}
			}
			msgOp, msg = f.op, append(msg[:0], f.payload...)
		case wsOpCont:
			if msgOp == 0 {
				return &wsCloseError{wsCloseProtocol, "continuation without a message"}
			}
			msg = append(msg, f.payload...)
		default:
			return &wsCloseError{wsCloseProtocol, "unknown opcode"}
		}
		if len(msg) > wsMaxMessage {
			return &wsCloseError{wsCloseTooBig, "message too big"}
		}
		if !f.fin {
			continue
		}
		if msgOp == wsOpText && !utf8.Valid(msg) {
			return &wsCloseError{wsCloseInvalidData, "text message is not UTF-8"}
		}
		if err := wsWriteFrame(bw, msgOp, msg); err != nil {
			return err
		}
		msgOp = 0
	}
}
