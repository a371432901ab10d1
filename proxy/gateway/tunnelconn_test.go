package gateway

import (
	"bytes"
	"io"
	"net"
	"testing"
	"testing/iotest"
)

// Ensure copyIdle copies everything, small writes and large, whatever the
// reads return, and reports the upstream's end as no error.
func TestCopyIdle_CopiesEverything(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 10000) // 160 KB
	for name, src := range map[string]func() io.Reader{
		"small reads": func() io.Reader { return iotest.HalfReader(bytes.NewReader(big[:1000])) },
		"large reads": func() io.Reader { return bytes.NewReader(big) },
		"one byte":    func() io.Reader { return iotest.OneByteReader(bytes.NewReader(big[:3000])) },
		"mixed, eof": func() io.Reader {
			return iotest.DataErrReader(io.MultiReader(bytes.NewReader(big[:700]), bytes.NewReader(big[700:])))
		},
		"empty stream": func() io.Reader { return bytes.NewReader(nil) },
	} {
		t.Run(name, func(t *testing.T) {
			want, _ := io.ReadAll(src())
			var got bytes.Buffer
			n, err := copyIdle(&got, src(), newBufferPool())
			if err != nil || n != int64(len(want)) || !bytes.Equal(got.Bytes(), want) {
				t.Errorf("copied %d of %d bytes, err %v, equal %v", n, len(want), err, bytes.Equal(got.Bytes(), want))
			}
		})
	}
}

// Ensure a tunnel's connection is what io.Copy copies through (ReadFrom,
// WriteTo) and passes a half-close on.
func TestTunnelConn_IsCopiedThroughItsOwnMethods(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &tunnelConn{Conn: a, buffers: newBufferPool()}
	var _ io.ReaderFrom = c
	var _ io.WriterTo = c
	go func() {
		_, _ = io.Copy(c, bytes.NewReader([]byte("hello")))
		_ = c.CloseWrite() // net.Pipe has none: a no-op
		_ = c.Close()
	}()
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "hello" {
		t.Errorf("read %q, %v", got, err)
	}
}
