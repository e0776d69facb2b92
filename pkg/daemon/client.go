package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Ask sends one request to a running daemon's control socket and returns
// its answer: the client side of the protocol serveControl speaks (one JSON
// Request, one JSON Response). A Response that carries an Error is
// returned with that error.
func Ask(socket string, req Request) (Response, error) {
	var resp Response
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return resp, fmt.Errorf("cannot reach statewall at %s (is it running? are you root?): %w", socket, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	werr := json.NewEncoder(c).Encode(req)
	// Even when the request could not be written, the daemon may have
	// answered why (it refuses a peer that is not root).
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		if werr != nil {
			return resp, fmt.Errorf("sending the request: %w", werr)
		}
		return resp, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}
