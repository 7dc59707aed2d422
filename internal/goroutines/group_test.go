package goroutines

import "testing"

func TestGroup(t *testing.T) {
	var g Group
	ran := make(chan struct{})
	if !g.Go(func() { close(ran) }) {
		t.Fatal("Go refused before Close")
	}
	<-ran
	if !g.Add() {
		t.Fatal("Add refused before Close")
	}
	g.Close()
	if g.Add() || g.Go(func() { t.Error("ran after Close") }) {
		t.Fatal("a goroutine was counted after Close")
	}
	waited := make(chan struct{})
	go func() { g.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned before the counted goroutine was done")
	default:
	}
	g.Done()
	<-waited
}
