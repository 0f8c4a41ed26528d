module nodeops.local/tools/nodeimages/pause

go 1.26
