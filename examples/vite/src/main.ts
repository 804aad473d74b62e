// What a store needs: create, record what the shopper does, re-rank what the server proposes.
// The model file is the store's to host (here /models/, next to the page); everything else
// comes from the localrank package through the bundler.
import { LocalRank, LocalRankError, type Candidate, type Ranked } from "localrank";

const products: Candidate[] = [
  { id: "tent", title: "Two-person backpacking tent", categories: ["Camping"], score: 0.9 },
  { id: "stove", title: "Compact camping stove", categories: ["Camping"], score: 0.8 },
  { id: "shoes", title: "Trail running shoes", categories: ["Running"], score: 0.7 },
  { id: "watch", title: "GPS running watch", categories: ["Running"], score: 0.6 },
  { id: "kettle", title: "Electric kitchen kettle", categories: ["Kitchen"], score: 0.95 },
  { id: "pan", title: "Cast iron frying pan", categories: ["Kitchen"], score: 0.85 },
];

const $ = (id: string) => document.getElementById(id) as HTMLElement;

function show(ranked: Ranked[]) {
  $("recommended").replaceChildren(
    ...ranked.map((r) => {
      const li = document.createElement("li");
      li.dataset.id = r.id;
      li.textContent = `${products.find((p) => p.id === r.id)?.title} (${r.reason.text})`;
      return li;
    }),
  );
}

async function main() {
  const rec = await LocalRank.create({
    modelUrl: "/models/all-MiniLM-L6-v2.q8_0.gguf",
    onProgress: ({ file, phase }) => ($("status").textContent = `${file}: ${phase}`),
  });
  show(await rec.rerank(products, { limit: 4 }));
  $("products").replaceChildren(
    ...products.map((product) => {
      const button = document.createElement("button");
      button.textContent = `View ${product.title}`;
      button.onclick = async () => {
        await rec.record({ kind: "view", at: Date.now(), item: product });
        show(await rec.rerank(products, { limit: 4 }));
      };
      const li = document.createElement("li");
      li.append(button);
      return li;
    }),
  );
  $("status").textContent = `Ready (${rec.info.workers} workers)`;
  document.body.dataset.ready = "true";
}

main().catch((error: unknown) => {
  const name = error instanceof LocalRankError ? error.name : "unknown";
  $("status").textContent = `Recommendations are off (${name}): the shop works as usual.`;
  document.body.dataset.ready = "failed";
});
