// The pod sandbox ("pause") program of kfn's local cluster.
module kfn.dev/hack/cluster/pause

go 1.24.0
